"""Run command lines of the project's scripts for the CLI tests (shared by several test modules)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# each argv of `bad` runs as `python SCRIPT ARGS...` would, all in one interpreter that imports torch
# once; sys.exit("error: ...") becomes status 1 with the message on stderr, as in Python. Each result
# is [exit status, stderr], plus, when a workspace folder is given as the second argument, the
# files under it that changed, appeared or vanished during the run
HARNESS = r'''
import contextlib, hashlib, io, json, os, runpy, sys, traceback
cases, ws = json.loads(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else None)

def snapshot():
    out = {}
    for d, _, names in (os.walk(ws) if ws else ()):
        for n in names:
            p = os.path.join(d, n)
            with open(p, 'rb') as f:
                out[os.path.relpath(p, ws)] = hashlib.sha256(f.read()).hexdigest()
    return out

results = {}
for name, argv in cases.items():
    before, err, code = snapshot(), io.StringIO(), 0
    sys.argv = argv
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_path(argv[0], run_name='__main__')
        except SystemExit as e:
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            code = 1 if isinstance(e.code, str) else (e.code or 0)
        except BaseException:
            traceback.print_exc()
            code = 1
    after = snapshot()
    results[name] = [code, err.getvalue()]
    if ws:
        results[name].append(sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
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


def torchrun(args, nproc=2):
    """`torchrun --standalone --nproc_per_node=nproc ARGS` from the repository root; a failure's message
    holds both output tails. PYTHONFAULTHANDLER makes a process that dies in native code (a signal,
    an abort) print its Python stack, so a crash shows where each process was."""
    out = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
                          *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, 'PYTHONFAULTHANDLER': '1'})
    assert out.returncode == 0, f"stdout:\n{out.stdout[-2000:]}\nstderr:\n{out.stderr[-4000:]}"
    return out
