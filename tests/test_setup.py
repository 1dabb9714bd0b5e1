"""script/setup.sh, demo.sh, test.sh: they install into a virtual environment, never into the
system's python, with only `python3` on the PATH. A fake python3 stands in for a Debian-style
externally managed interpreter (its pip refuses, as PEP 668's does) and records every call, so
nothing is downloaded or installed."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

# the system python: its venv module makes a fake environment whose python logs its arguments
FAKE_PYTHON3 = r'''#!/bin/bash
echo "system python3 $*" >> "$LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/bash\necho "venv python $*" >> "$LOG"\n[ "$1" = -c ] && exit 1\nexit 0\n' > "$3/bin/python"
  chmod +x "$3/bin/python"
  printf 'VIRTUAL_ENV=%s\nexport PATH="%s/bin:$PATH"\n' "$3" "$3" > "$3/bin/activate"
  exit 0
fi
if [ "$1" = -m ] && [ "$2" = pip ]; then
  echo "error: externally-managed-environment" >&2
  exit 1
fi
exit 0
'''


def write_exe(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def repo(tmp_path):
    """A copy of the scripts and requirements.txt, and a PATH whose only python is the fake python3."""
    root = tmp_path / 'repo'
    (root / 'script').mkdir(parents=True)
    for name in ('setup.sh', 'demo.sh', 'test.sh'):
        shutil.copy(os.path.join(ROOT, 'script', name), root / 'script' / name)
    shutil.copy(os.path.join(ROOT, 'requirements.txt'), root / 'requirements.txt')
    fake = tmp_path / 'bin'
    fake.mkdir()
    write_exe(fake / 'python3', FAKE_PYTHON3)
    # basic tools only: no python, no nvidia-smi
    for tool in ('bash', 'cat', 'cksum', 'mkdir', 'chmod', 'rm', 'dirname'):
        os.symlink(shutil.which(tool), fake / tool)
    log = tmp_path / 'calls.log'
    env = {'PATH': str(fake), 'LOG': str(log), 'HOME': str(tmp_path)}
    return root, env, log


def run(root, env, script, *args):
    res = subprocess.run(['bash', f'script/{script}', *args], cwd=root, env=env, capture_output=True, text=True)
    return res


def calls(log):
    return log.read_text().splitlines() if log.exists() else []


def test_setup_makes_a_venv_and_never_installs_into_the_system_python(repo):
    root, env, log = repo
    res = run(root, env, 'setup.sh')
    assert res.returncode == 0, res.stderr
    venv = root / '.venv'
    got = calls(log)
    assert got[0] == f"system python3 -m venv {venv}"
    assert not any(c.startswith('system python3 -m pip') for c in got)  # it would refuse anyway
    pip = [c for c in got if c.startswith('venv python -m pip install')]
    assert pip[0].endswith('torch==2.13.0')  # no nvidia-smi: the CPU pin first
    assert pip[-1].endswith('-r requirements.txt')

    # a second run reuses the environment and installs nothing
    log.unlink()
    res = run(root, env, 'setup.sh')
    assert res.returncode == 0 and 'already installed' in res.stderr
    assert calls(log) == []

    # a changed requirements.txt installs again, into the same environment
    with open(root / 'requirements.txt', 'a') as f:
        f.write('einops\n')
    run(root, env, 'setup.sh')
    got = calls(log)
    assert got and all(c.startswith('venv python') for c in got) and got[-1].endswith('-r requirements.txt')


def test_setup_installs_into_an_active_venv(repo, tmp_path):
    root, env, log = repo
    mine = tmp_path / 'mine'
    subprocess.run(['bash', str(tmp_path / 'bin' / 'python3'), '-m', 'venv', str(mine)], env=env, check=True)
    log.unlink()
    res = run(root, {**env, 'VIRTUAL_ENV': str(mine)}, 'setup.sh')
    assert res.returncode == 0, res.stderr
    assert not (root / '.venv').exists()
    got = calls(log)
    assert got and all(c.startswith('venv python') for c in got)
    assert (mine / '.krony-pt-requirements').is_file()


def test_setup_stale_virtual_env_is_one_error(repo, tmp_path):
    root, env, log = repo
    res = run(root, {**env, 'VIRTUAL_ENV': str(tmp_path / 'gone')}, 'setup.sh')
    assert res.returncode == 1
    assert res.stderr.startswith('error: VIRTUAL_ENV=') and 'deactivate' in res.stderr
    assert calls(log) == []


def test_setup_without_venv_module_cleans_up(repo):
    root, env, log = repo
    write_exe(Path(env['PATH']) / 'python3', '#!/bin/bash\nmkdir -p "$3/bin"\necho "No module named ensurepip" >&2\nexit 1\n')
    res = run(root, env, 'setup.sh')
    assert res.returncode == 1 and 'python3-venv' in res.stderr.splitlines()[-1]
    assert not (root / '.venv').exists()  # nothing half-made left to be reused


@pytest.mark.parametrize('script,args,expect', [('demo.sh', ['--quick'], 'venv python script/demo.py --quick'),
                                                ('test.sh', ['-x'], 'venv python -m pytest -q tests -x')])
def test_demo_and_test_run_in_the_venv(repo, script, args, expect):
    root, env, log = repo
    res = run(root, env, script, *args)
    assert res.returncode == 0, res.stderr
    got = calls(log)
    assert got[-1] == expect
    assert not any(c.startswith('system python3') and 'venv' not in c for c in got)
