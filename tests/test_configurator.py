"""configurator.py: a value of the wrong type ends in what to write instead, and that suggestion
is accepted; --help after config files shows their values."""
import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from configurator import load_config
import train


@pytest.mark.parametrize('arg, fix, value', [
    ('--compile=false', '--compile=False', False),
    ('--compile=1', '--compile=True', True),
    ('--eval_ppl=wiki103', '--eval_ppl="[\'wiki103\']"', ['wiki103']),
    ('--batch_size=4.0', '--batch_size=4', 4),
    ('--learning_rate=fast', '--learning_rate=0.0006', 6e-4),
    ('--out_dir=123', '--out_dir="\'123\'"', '123'),
])
def test_type_errors_end_in_a_value_that_works(arg, fix, value):
    key = arg[2:].split('=')[0]
    with pytest.raises(ValueError, match=re.escape(f"({arg}); write ") + '.*' + re.escape(fix)) as e:
        load_config(train.DEFAULTS, [arg])
    # what the message says, as the shell would pass it on (quotes removed), is accepted
    shell = fix.replace('"', '')
    assert str(e.value).count(fix) >= 1
    assert load_config(train.DEFAULTS, [shell])[key] == value


def test_type_errors_show_the_syntax_of_where_they_came_from(tmp_path):
    cfg = tmp_path / 'c.py'
    cfg.write_text("compile = 'no'\n")
    with pytest.raises(ValueError, match=re.escape("write compile = False (True or False, capitalised)")):
        load_config(train.DEFAULTS, [str(cfg)])
    with pytest.raises(ValueError, match=re.escape("write --compile=True or --compile=False")):
        load_config(train.DEFAULTS, ['--compile=maybe'])
    with pytest.raises(ValueError, match=re.escape("write a python list, e.g. --eval_ppl=[]")):
        load_config(train.DEFAULTS, ['--eval_ppl=3'])


def test_help_after_a_config_shows_its_values():
    out = subprocess.run([sys.executable, 'train.py', 'config/train_gpt2.py', '--max_iters=5', '--help'],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == ''
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith('  ') and ' = ' in line}
    assert set(lines) == set(train.DEFAULTS)
    assert re.match(r"  max_iters = 5 +\(default 600000\) optimizer steps", lines['max_iters'])
    assert re.match(r"  init_from = 'checks/kron_768_768_1_vl.pt' +\(default 'scratch'\)", lines['init_from'])
    assert re.match(r"  eval_ppl = \['wiki103'\] +\(default \[\]\)", lines['eval_ppl'])  # from paper_recipe.py
    assert re.match(r"  log_interval = 10 +iterations between", lines['log_interval'])  # unchanged: no default shown
    bad = subprocess.run([sys.executable, 'train.py', 'config/train_gpt2.py', '--compile=no', '--help'],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: config key 'compile' expects bool")


def test_every_config_loads_and_the_baselines_include_the_paper_recipe():
    # include() is relative to the including file: config/baselines/ reaches paper_recipe.py one up
    files = glob.glob(os.path.join(ROOT, 'config', '**', '*.py'), recursive=True)
    loaded = {os.path.relpath(f, ROOT): load_config(train.DEFAULTS, [f]) for f in files}
    recipe = loaded[os.path.join('config', 'paper_recipe.py')]
    assert os.path.join('config', 'baselines', 'inrank_stage2.py') in loaded
    assert recipe['learning_rate'] != train.DEFAULTS['learning_rate']  # values the baselines can only get
    assert recipe['eval_ppl'] != train.DEFAULTS['eval_ppl']            # from paper_recipe.py
    for name in ('gpt2_dense', 'distil_truncate', 'lowrank_81m'):
        c = loaded[os.path.join('config', 'baselines', f'{name}.py')]
        assert (c['learning_rate'], c['eval_ppl']) == (recipe['learning_rate'], recipe['eval_ppl'])
        assert c['out_dir'] == f'checks/{name}'
