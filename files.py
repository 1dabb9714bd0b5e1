"""
Writing results safely: destinations are checked before any work, files and directories appear
whole or not at all, and a failed or killed write leaves the previous version in place.

    check_destination('checks/x.pt', force=False)     # before loading or computing anything
    atomic_write('checks/x.pt', lambda f: torch.save(obj, f))
    with atomic_dir('out/krony-81m', force=True) as tmp: ...   # write into tmp; renamed at the end

A write goes to NAME.partial next to NAME and is renamed over it when complete. The .partial name
is the same for every write to NAME, so a write killed half-way (kill -9, power loss) is replaced
by the next one instead of accumulating; nothing else is ever deleted.
"""

import contextlib
import errno
import io
import os
import re
import shutil

PARTIAL = '.partial'
DIR_MARK = '.partial-dir'  # inside a directory being written: only such directories are removed


def _describe(e):
    return e.strerror or str(e) if isinstance(e, OSError) else str(e)


def check_destination(path, force=True, kind='file', flag='--force'):
    """Raise ValueError unless `path` can be written as a `kind` ('file' or 'dir'): the nearest
    existing ancestor is a writable directory, a file is not a directory (and not already there
    unless force), a directory is not a file (and empty unless force)."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.exists(path):
        if kind == 'file' and os.path.isdir(path):
            raise ValueError(f"{path} is a directory; give a file name")
        if kind == 'dir' and not os.path.isdir(path):
            raise ValueError(f"{path} exists and is not a directory")
        if not force and (kind == 'file' or os.listdir(path)):
            what = 'exists' if kind == 'file' else 'is not empty'
            raise ValueError(f"{path} {what}; pass {flag} to replace it")
    parent = os.path.dirname(path) if kind == 'file' or not os.path.exists(path) else path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: no permission to write in {parent}")
    return path


def _remove_stale_tmp(path):
    # earlier versions of this toolkit wrote NAME.tmpPID; remove those whose process is gone
    folder, base = os.path.split(path)
    for name in os.listdir(folder or '.'):
        m = re.fullmatch(re.escape(base) + r'\.tmp(\d+)', name)
        if m:
            try:
                os.kill(int(m.group(1)), 0)
            except ProcessLookupError:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
            except OSError:
                pass


def atomic_write(path, write, mode='wb'):
    """write(f) into PATH.partial, then rename it to path. Any failure (a full disk, no permission)
    raises ValueError naming the path and the cause, and leaves a previous file at path intact."""
    path = os.path.abspath(os.fspath(path))
    tmp = path + PARTIAL
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _remove_stale_tmp(path)
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        cause = 'the disk is full' if e.errno == errno.ENOSPC else _describe(e)
        raise ValueError(f"cannot write {path}: {cause}; the previous file, if any, is unchanged") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path, force=False):
    """Yields a fresh directory PATH.partial to fill; on success it replaces path (which must be
    absent or empty unless force). On any failure path is left as it was and the partial removed."""
    path = check_destination(path, force, kind='dir')
    tmp = path + PARTIAL
    if os.path.isdir(tmp) and os.path.exists(os.path.join(tmp, DIR_MARK)):
        shutil.rmtree(tmp)  # a partial export of an earlier, killed run
    elif os.path.exists(tmp):
        raise ValueError(f"{tmp} is in the way (not made by this toolkit); move it and run again")
    old = path + '.old'
    try:
        os.makedirs(tmp)
        open(os.path.join(tmp, DIR_MARK), 'w').close()
        yield tmp
        os.remove(os.path.join(tmp, DIR_MARK))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # the usual permissions (some writers make owner-only files)
        for name in os.listdir(tmp):
            os.chmod(os.path.join(tmp, name), 0o666 & ~umask)
        if os.path.exists(path):
            os.rename(path, old)
        os.rename(tmp, path)
    except OSError as e:
        if os.path.exists(old) and not os.path.exists(path):
            os.rename(old, path)  # put the previous directory back
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"cannot write {path}: {_describe(e)}; the previous directory, if any, is unchanged") from None
    except BaseException:
        if os.path.exists(old) and not os.path.exists(path):
            os.rename(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(old):
        shutil.rmtree(old)


def read_text(path):
    """The text of a UTF-8 file; ValueError naming the file if it is missing, not UTF-8 or empty."""
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist")
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise ValueError(f"{path} is empty")
    return text


def write_tokens(ids, path):
    """Token ids as uint16 (the format train.py reads) to path, atomically."""
    import numpy as np
    arr = np.asarray(ids, dtype=np.int64)
    if arr.size == 0:
        raise ValueError(f"refusing to write {path}: no tokens")
    if arr.min() < 0 or arr.max() >= 2 ** 16:
        raise ValueError(f"refusing to write {path}: token ids must be in [0, 65536) for uint16")
    atomic_write(path, lambda f: arr.astype(np.uint16).tofile(f))


def prepare_args(doc, out_dir, source):
    """The arguments of a data/<name>/prepare.py that reads a shipped text: --out_dir (default the
    script's folder) and --source (default the shipped file), the destination checked."""
    import argparse
    p = argparse.ArgumentParser(description=doc.strip().split('\n\n')[0])
    p.add_argument('--out_dir', default=out_dir, help='where the token files go (default: this folder)')
    p.add_argument('--source', default=os.path.normpath(source), help=f'the text (default: {os.path.normpath(source)})')
    args = p.parse_args()
    check_destination(args.out_dir, kind='dir')
    return args


def wikitext_rows(path):
    """The rows of a WikiText file as HF's wikitext loader gives them: every line with its "\\n",
    whitespace-only lines as ''."""
    lines = io.StringIO(read_text(path))  # missing, empty or not UTF-8: one line naming the file
    return [row if row.strip() else '' for row in lines]


def jsonl_texts(path):
    """The "text" of every JSON object of a .jsonl file, one per line (blank lines skipped); a line
    that is not such an object raises ValueError naming the file and the line."""
    import json
    texts = []
    for i, line in enumerate(io.StringIO(read_text(path)), 1):  # empty or not UTF-8: one line
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {i}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get('text'), str):
            raise ValueError(f"{path}, line {i}: no \"text\" string in the JSON object")
        texts.append(row['text'])
    return texts
