"""
Writing results safely: destinations are checked before any work, files and directories appear
whole or not at all, and a failed or killed write leaves the previous version in place.

    check_destination('checks/x.pt', force=False)     # before loading or computing anything
    atomic_write('checks/x.pt', lambda f: torch.save(obj, f))
    with atomic_dir('out/krony-81m', force=True) as tmp: ...   # write into tmp; renamed at the end

A write goes to NAME.partial next to NAME and is renamed over it when complete. The .partial name
is the same for every write to NAME, so a write killed half-way (kill -9, power loss) is replaced
by the next one instead of accumulating. A replaced directory is first moved aside into a folder
made for this write alone, and removed only once the new one is in place; nothing the toolkit did
not make is ever deleted.

Outputs never alias inputs: check_destination(path, inputs=[...]) refuses an output that is,
holds or lies inside any input (symlinks resolved), and output_lock(path) makes a second writer of
the same output fail at once, naming the first:

    check_destination(out, args.force, inputs=[args.source])
    with output_lock(out): ...
"""

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import tempfile
import threading

PARTIAL = '.partial'
DIR_MARK = '.partial-dir'  # inside a directory being written: only such directories are removed


def _describe(e):
    return e.strerror or str(e) if isinstance(e, OSError) else str(e)


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_aliases(path, inputs):
    """ValueError when the output `path` is, holds or lies inside one of `inputs`, symlinks resolved
    (writing it would replace what the command reads). Inputs that do not exist (hub names) pass."""
    out = os.path.realpath(os.path.expanduser(os.fspath(path)))
    for given in inputs:
        src = os.path.expanduser(os.fspath(given)) if given else None
        if not src or not os.path.exists(src):
            continue
        src = os.path.realpath(src)
        if _inside(out, src) or _inside(src, out):
            how = 'is' if out == src else 'lies inside' if _inside(out, src) else 'holds'
            raise ValueError(f"the output {path} {how} the input {given}; write the output somewhere else")


def _is_empty(path):
    # a marked partial export left inside an empty directory (see atomic_dir) does not count
    return all(name == PARTIAL and os.path.exists(os.path.join(path, name, DIR_MARK)) for name in os.listdir(path))


def check_destination(path, force=True, kind='file', flag='--force', inputs=(), replace=False):
    """Raise ValueError unless `path` can be written as a `kind` ('file' or 'dir'): the nearest
    existing ancestor is a writable directory, a file is not a directory (and not already there
    unless force), a directory is not a file (and empty unless force), and path is not, does not
    hold and does not lie inside any of `inputs`. With replace, a directory that will be replaced
    must not be or hold the working directory."""
    given, path = path, os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.exists(path):
        if kind == 'file' and os.path.isdir(path):
            raise ValueError(f"{path} is a directory; give a file name")
        if kind == 'dir' and not os.path.isdir(path):
            raise ValueError(f"{path} exists and is not a directory")
        if not force and (kind == 'file' or not _is_empty(path)):
            what = 'exists' if kind == 'file' else 'is not empty'
            raise ValueError(f"{path} {what}; pass {flag} to replace it")
        if replace and kind == 'dir' and _inside(os.path.realpath(os.getcwd()), os.path.realpath(path)):
            raise ValueError(f"{path} is or holds the working directory; it cannot be replaced, give another output")
    check_aliases(given, inputs)
    parent = os.path.dirname(path) if kind == 'file' or not os.path.exists(path) else path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: no permission to write in {parent}")
    return path


@contextlib.contextmanager
def output_lock(path):
    """Hold the output `path` (a file or a directory) for this process while the block runs: an
    exclusive lock on the file .NAME.lock beside it, which holds our process id and is removed on
    the way out; the system releases the lock if the process dies. A second writer of the same
    output fails at once with ValueError naming the first."""
    path = os.path.realpath(os.path.expanduser(os.fspath(path)))
    folder, base = os.path.split(path)
    lock = os.path.join(folder, f'.{base}.lock')
    if os.path.isdir(path) and not os.access(folder, os.W_OK):
        lock = os.path.join(path, '.lock')  # an existing folder in one we cannot write (out_dir='.' at home)
    made = []  # folders made for the lock, removed again if still empty
    while True:
        try:
            for d in _missing_parents(folder):
                os.mkdir(d)
                made.append(d)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            _remove_empty(made)
            raise ValueError(f"cannot write {path}: {_describe(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors='replace').strip() or 'unknown'
            os.close(fd)
            _remove_empty(made)
            raise ValueError(f"{path} is being written by another process (pid {pid}); wait for it to "
                             f"finish or choose another output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the lock file as we opened it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.remove(lock)
        os.close(fd)
        _remove_empty(made)


def _missing_parents(folder):
    missing = []
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing[::-1]


def _remove_empty(folders):
    for d in reversed(folders):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _write_error(path, e, what):
    """The one line for a failed write: a full disk said as such (safetensors reports it in its
    own SafetensorError), anything else with its cause."""
    text = str(e)
    full = getattr(e, 'errno', None) == errno.ENOSPC or 'code: 28' in text or 'No space left' in text
    cause = 'the disk is full' if full else _describe(e)
    return ValueError(f"cannot write {path}: {cause}; the previous {what}, if any, is unchanged")


@contextlib.contextmanager
def _interrupts_kept():
    """Ctrl-C inside a writer (torch.save, safetensors) can surface as the writer's own error: note
    the signal, so that such an error is raised as the KeyboardInterrupt it was (exit 130)."""
    hit = []

    def on_sigint(signum, frame):
        hit.append(signum)
        raise KeyboardInterrupt

    own = (threading.current_thread() is threading.main_thread()
           and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if own:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except BaseException:
        if hit:
            raise KeyboardInterrupt from None
        raise
    finally:
        if own:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def atomic_write(path, write, mode='wb'):
    """write(f) into PATH.partial, then rename it to path. Any failure (a full disk, no permission)
    raises ValueError naming the path and the cause, and leaves a previous file at path intact;
    Ctrl-C during the write is a KeyboardInterrupt, the previous file intact too."""
    path = os.path.abspath(os.fspath(path))
    tmp = path + PARTIAL
    try:
        with _interrupts_kept():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, mode) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise _write_error(path, e, 'file') from None
        raise


def _clear_partial(tmp):
    if os.path.isdir(tmp) and os.path.exists(os.path.join(tmp, DIR_MARK)):
        shutil.rmtree(tmp)  # a partial export of an earlier, killed run
    elif os.path.lexists(tmp):
        raise ValueError(f"{tmp} is in the way (not made by this toolkit); move it and run again")


def _usual_permissions(folder):
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)  # the usual permissions (some writers make owner-only files)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


@contextlib.contextmanager
def atomic_dir(path, force=False):
    """Yields a fresh directory to fill, which becomes path when the block ends. Path may be absent,
    an empty directory (filled in place: a mount point cannot be renamed) or, with force, any
    directory, which is moved aside into a folder made for this write alone and removed only once
    the new one is in place (a write killed between the two renames leaves it in .NAME.replaced-*/old).
    A symlink is followed: its target is written. On any failure path is left as it was."""
    path = os.path.realpath(check_destination(path, force, kind='dir', replace=force))
    in_place = os.path.isdir(path) and _is_empty(path)
    tmp = os.path.join(path, PARTIAL) if in_place else path + PARTIAL
    _clear_partial(tmp)
    aside = None
    try:
        with _interrupts_kept():
            os.makedirs(tmp)
            open(os.path.join(tmp, DIR_MARK), 'w').close()
            yield tmp
            os.remove(os.path.join(tmp, DIR_MARK))
            _usual_permissions(tmp)
            if in_place:
                for name in os.listdir(tmp):
                    os.rename(os.path.join(tmp, name), os.path.join(path, name))
                os.rmdir(tmp)
            else:
                if os.path.exists(path):
                    aside = tempfile.mkdtemp(prefix=f'.{os.path.basename(path)}.replaced-', dir=os.path.dirname(path))
                    os.rename(path, os.path.join(aside, 'old'))
                os.rename(tmp, path)
    except BaseException as e:
        if aside and not os.path.exists(path):
            os.rename(os.path.join(aside, 'old'), path)  # put the previous directory back
        if aside:
            with contextlib.suppress(OSError):
                os.rmdir(aside)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) or type(e).__name__ == 'SafetensorError':
            raise _write_error(path, e, 'directory') from None
        raise
    if aside:
        shutil.rmtree(aside)
