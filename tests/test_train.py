"""train.py: DDP equivalence, exact resume, signals, non-finite loss, config errors, distillation."""
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from cli_runs import torchrun
from conftest import ROOT
from configurator import load_config
from checkpoint import save_checkpoint
from model import GPT, GPTConfig
import train

TINY = os.path.join(ROOT, 'config', 'test_tiny.py')


def run_train(*args, check=True):
    out = subprocess.run([sys.executable, 'train.py', TINY, *args], cwd=ROOT, capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def losses(stdout):
    return {int(i): v for i, v in re.findall(r'^iter (\d+) \| loss (\S+) ', stdout, re.M)}


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=False)['model']


def test_two_processes_match_one(char_data, tmp_path):
    # the same global batch (2 micro-steps x 4 sequences): one process runs both micro-steps,
    # two processes one each and gloo all-reduces their gradients on the last one
    run_train(f'--dataset={char_data}', f'--out_dir={tmp_path / "one"}')
    torchrun(['train.py', TINY, f'--dataset={char_data}', f'--out_dir={tmp_path / "two"}'])
    one = torch.load(tmp_path / 'one' / 'ckpt.pt', weights_only=False)
    two = torch.load(tmp_path / 'two' / 'ckpt.pt', weights_only=False)
    assert two['iter_num'] == 8
    model = GPT(GPTConfig(**two['model_args']))
    model.load_state_dict(two['model'])
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()])
    assert len(two['weight_sums']) == 2
    assert torch.equal(two['weight_sums'][1], sums)  # rank 1's weights are the saved (rank 0) ones
    torch.manual_seed(1337)  # train.py's seed for rank 0: the initial weights
    init = GPT(GPTConfig(**two['model_args'])).state_dict()
    moved = max((one['model'][k] - init[k]).abs().max().item() for k in init)
    diff = max((one['model'][k] - two['model'][k]).abs().max().item() for k in init)
    assert moved > 1e-3 and diff < 1e-5, (moved, diff)


DROPOUT = '--dropout=0.1'  # dropout draws from the torch RNG, so resuming must restore its state


@pytest.fixture(scope='module')
def stopped_run(char_data, tmp_path_factory):
    """out_dir of a run stopped at iteration 5 of 8."""
    out_dir = tmp_path_factory.mktemp('stopped')
    run_train(f'--dataset={char_data}', DROPOUT, f'--out_dir={out_dir}', '--max_iters=5')
    return out_dir


def test_resume_is_exact(char_data, stopped_run, tmp_path):
    whole = run_train(f'--dataset={char_data}', DROPOUT, f'--out_dir={tmp_path / "whole"}')
    shutil.copytree(stopped_run, tmp_path / 'split')
    resumed = run_train(f'--dataset={char_data}', DROPOUT, f'--out_dir={tmp_path / "split"}', '--init_from=resume')
    a, b = losses(whole.stdout), losses(resumed.stdout)
    assert sorted(b) == [5, 6, 7] and all(a[i] == b[i] for i in b), (a, b)
    wa, wb = weights(tmp_path / 'whole' / 'ckpt.pt'), weights(tmp_path / 'split' / 'ckpt.pt')
    assert all(torch.equal(wa[k], wb[k]) for k in wa)



def test_resume_with_distillation_and_dropout_is_exact(char_data, stopped_run, tmp_path):
    # building the teacher draws from the RNG (its random init before its weights load): a resumed
    # run must restore the RNG after that, or its dropout masks differ from the whole run's
    shutil.copy(stopped_run / 'best.pt', tmp_path / 'teacher.pt')
    kd = [f'--dataset={char_data}', DROPOUT, f'--kd_teacher={tmp_path / "teacher.pt"}']
    whole = run_train(*kd, f'--out_dir={tmp_path / "whole"}')
    run_train(*kd, f'--out_dir={tmp_path / "split"}', '--max_iters=5')
    resumed = run_train(*kd, f'--out_dir={tmp_path / "split"}', '--init_from=resume')
    a, b = losses(whole.stdout), losses(resumed.stdout)
    assert sorted(b) == [5, 6, 7] and all(a[i] == b[i] for i in b), (a, b)
    wa, wb = weights(tmp_path / 'whole' / 'ckpt.pt'), weights(tmp_path / 'split' / 'ckpt.pt')
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

def test_nonfinite_loss_stops_and_keeps_the_checkpoint(char_data, stopped_run, tmp_path):
    shutil.copytree(stopped_run, tmp_path, dirs_exist_ok=True)
    before = {name: (tmp_path / name).read_bytes() for name in ('ckpt.pt', 'best.pt')}
    # an absurd learning rate blows the weights up in one step, so the next loss is nan
    out = run_train(f'--dataset={char_data}', DROPOUT, f'--out_dir={tmp_path}', '--init_from=resume',
                    '--learning_rate=1e30', check=False)
    assert out.returncode == 1
    assert re.search(r'^error: non-finite loss at iteration 6 ', out.stderr, re.M), out.stderr
    assert 'Traceback' not in out.stderr
    assert all((tmp_path / name).read_bytes() == data for name, data in before.items())
    assert sorted(os.listdir(tmp_path)) == ['best.pt', 'ckpt.pt']


def test_sigterm_saves_a_checkpoint_that_resumes(char_data, tmp_path):
    args = [sys.executable, 'train.py', TINY, f'--dataset={char_data}', f'--out_dir={tmp_path}',
            '--max_iters=100000', '--lr_decay_iters=100000', '--eval_interval=100000']
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith('iter 3 '):
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert 'stopped by a signal' in out
    stopped_at = torch.load(tmp_path / 'ckpt.pt', weights_only=False)['iter_num']
    assert stopped_at >= 4
    resumed = run_train(*args[3:], '--init_from=resume', f'--max_iters={stopped_at + 2}')
    assert sorted(losses(resumed.stdout)) == [stopped_at, stopped_at + 1]
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=False)['iter_num'] == stopped_at + 2


def test_config_error_on_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, 'train.py', TINY, '--bach_size=4', f'--out_dir={tmp_path / "out"}'],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.startswith("error: unknown config key 'bach_size' (--bach_size=4); did you mean batch_size")
    assert 'Traceback' not in out.stderr
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('arg, message', [
    ('--batch_size=4.5', "config key 'batch_size' expects int, got 4.5"),
    ('--compile=1', "config key 'compile' expects bool"),
    ('--learning_rate=fast', "config key 'learning_rate' expects float, got 'fast'"),
    ('--eval_ppl=wiki103', "config key 'eval_ppl' expects list"),
    ('config/no_such_file.py', "config file config/no_such_file.py does not exist"),
    ('max_iters=3', "cannot parse argument 'max_iters=3'"),
])
def test_config_errors(arg, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(train.DEFAULTS, [TINY, arg])


def test_load_config_order_and_types(tmp_path):
    cfg = tmp_path / 'c.py'
    cfg.write_text("batch_size = 8\nlearning_rate = 2  # an int where a float is expected\nout_dir = 'x'\n")
    got = load_config(train.DEFAULTS, [str(cfg), '--out_dir=y', "--eval_ppl=['wiki103']"])
    assert got['batch_size'] == 8 and got['learning_rate'] == 2.0 and type(got['learning_rate']) is float
    assert got['out_dir'] == 'y' and got['eval_ppl'] == ['wiki103']
    assert got['n_layer'] == train.DEFAULTS['n_layer']
    cfg.write_text("import math\n")
    with pytest.raises(ValueError, match="unknown config key 'math'"):
        load_config(train.DEFAULTS, [str(cfg)])


def test_lr_schedule():
    c = SimpleNamespace(decay_lr=True, learning_rate=6e-4, min_lr=6e-5, warmup_iters=10, lr_decay_iters=110)
    assert train.get_lr(0, c) == pytest.approx(6e-4 / 11)
    assert train.get_lr(10, c) == pytest.approx(6e-4)
    assert train.get_lr(60, c) == pytest.approx((6e-4 + 6e-5) / 2)  # halfway down the cosine
    assert train.get_lr(110, c) == train.get_lr(10 ** 6, c) == pytest.approx(6e-5)


def test_distillation_run_and_kron_init(char_data, tmp_path):
    # a Kronecker checkpoint (as kron_decompose.py writes) fixes the architecture whatever the
    # config says; with itself as teacher and only the KL term the first loss is exactly 0
    with open(os.path.join(char_data, 'meta.pkl'), 'rb') as f:
        vocab = pickle.load(f)['vocab_size']
    torch.manual_seed(0)
    kron = GPT(GPTConfig(block_size=32, vocab_size=vocab, n_layer=1, n_head=2, n_embd=16, mlp='kron',
                         kron_dim1=4, kron_dim2=8, kron_factors=2, kron_scalers=True))
    path = str(tmp_path / 'kron.pt')
    save_checkpoint({'model': kron.state_dict(), 'model_args': vars(kron.config).copy()}, path)
    out = run_train(f'--dataset={char_data}', f'--out_dir={tmp_path / "out"}', f'--init_from={path}',
                    f'--kd_teacher={path}', '--kd_alpha_ce=1.0', '--kd_alpha_clm=0.0', '--kd_alpha_cos=0.5',
                    '--freeze_pos_emb=True', '--max_iters=2')
    assert abs(float(losses(out.stdout)[0])) < 1e-6  # KL 0 and 1 - cos(h, h) at rounding level
    ckpt = torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=False)
    assert torch.equal(ckpt['model']['transformer.wpe.weight'], kron.state_dict()['transformer.wpe.weight'])
    assert not torch.equal(ckpt['model']['transformer.wte.weight'], kron.state_dict()['transformer.wte.weight'])
    assert ckpt['model_args']['mlp'] == 'kron' and ckpt['model_args']['n_layer'] == 1
    assert ckpt['model']['transformer.h.0.mlp.c_fc.A'].shape == (2, 4, 8)


def test_help_lists_every_key_with_its_meaning():
    out = subprocess.run([sys.executable, 'train.py', '--help'], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == ''
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith('  ') and ' = ' in line}
    assert set(lines) == set(train.DEFAULTS)
    assert "kron: c_fc's first factor is (kron_dim1, kron_dim2)" in lines['kron_dim1']  # from GPTConfig
    assert 'weight of the cosine loss' in lines['kd_alpha_cos']                        # from train.py


def test_log_has_an_eta_and_the_end_says_where_the_checkpoints_are(char_data, tmp_path):
    out = run_train(f'--dataset={char_data}', f'--out_dir={tmp_path}', '--lr_decay_iters=20')
    assert all(' | eta ' in line for line in out.stdout.splitlines() if line.startswith('iter '))
    assert f"done: 8 iterations; checkpoints in {tmp_path}: ckpt.pt" in out.stdout
    assert 'note: max_iters=8 < lr_decay_iters=20' in out.stdout


def test_leftovers_of_a_killed_save_are_cleaned_and_nothing_else(char_data, stopped_run, tmp_path):
    """A save killed half-way leaves NAME.partial, which the next save reuses; nothing else is
    touched."""
    shutil.copytree(stopped_run, tmp_path, dirs_exist_ok=True)
    (tmp_path / 'ckpt.pt.partial').write_bytes(b'half a checkpoint')
    (tmp_path / 'notes.tmp7').write_text('mine')
    run_train(f'--dataset={char_data}', DROPOUT, f'--out_dir={tmp_path}', '--init_from=resume')
    assert sorted(os.listdir(tmp_path)) == ['best.pt', 'ckpt.pt', 'notes.tmp7']
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=False)['iter_num'] == 8
