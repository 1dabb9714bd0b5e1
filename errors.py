"""
How every script of the toolkit ends: a mistake the user can fix (a ValueError raised with a
message that says what to do, a file that cannot be read or written) is one `error: ...` line on
stderr and exit status 1, never a traceback; Ctrl-C is one line and status 130.

    if __name__ == '__main__':
        errors.run(main)
"""

import sys


def run(main, *args):
    try:
        return main(*args)
    except ValueError as e:
        sys.exit(f"error: {e}")
    except OSError as e:  # what the scripts did not foresee: still one line, naming the file
        where = f" {e.filename}" if getattr(e, 'filename', None) else ''
        sys.exit(f"error:{where} {e.strerror or e}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
