"""Run command lines of the project's scripts for the CLI tests (shared by several test modules)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# each argv of `bad` runs as `python SCRIPT ARGS...` would, all in one interpreter that imports torch
# once; sys.exit("error: ...") becomes status 1 with the message on stderr, as in Python
HARNESS = r'''
import contextlib, io, json, runpy, sys, traceback
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    sys.argv, err, code = argv, io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        try:
            runpy.run_path(argv[0], run_name='__main__')
        except SystemExit as e:
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            code = 1 if isinstance(e.code, str) else (e.code or 0)
        except BaseException:
            traceback.print_exc()
            code = 1
    results[name] = [code, err.getvalue()]
print(json.dumps(results))
'''


class CliRuns:
    """Command lines started as the module starts, so their interpreters (torch's import, and
    transformers' for HF files) overlap the in-process tests. `good` argvs run as real processes;
    `bad` ones in the harness, and bad[real] also as a real process, to show both report the same."""

    def __init__(self, good, bad, real):
        popen = lambda args: subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True)
        self.procs = {name: popen(argv) for name, argv in good.items()}
        self.procs['real'], self.real = popen(bad[real]), real
        self.procs['harness'] = popen(['-c', HARNESS, json.dumps(bad)])
        self.done = {}

    def wait(self, name):
        """(exit status, stdout, stderr) of a `good` run."""
        if name not in self.done:
            out, err = self.procs[name].communicate()
            self.done[name] = (self.procs[name].returncode, out, err)
        return self.done[name]

    def bad(self, name):
        """(exit status, stderr) of a `bad` run."""
        rc, out, err = self.wait('harness')
        assert rc == 0, err
        results = json.loads(out.splitlines()[-1])
        rc, _, err = self.wait('real')
        assert [rc, err] == results[self.real]
        return tuple(results[name])


def assert_one_line_error(rc, err, expected=()):
    """A user's mistake: non-zero exit and exactly one `error: ...` line on stderr naming `expected`."""
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    for text in expected:
        assert text in lines[0]
