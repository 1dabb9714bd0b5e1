"""train.py's progress lines (train_parts.py): the eta (recent steps, evaluations where they
happen, never a first evaluation) and the heartbeat that keeps a long evaluation from being
silent. A fake clock stands in for time.time, so nothing here depends on how fast the machine is."""
import os
import re
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT
from configurator import load_config
import train
import train_parts

TINY = os.path.join(ROOT, 'config', 'test_tiny.py')


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize('max_iters, interval', [(20, 10), (23, 10), (7, 10), (30, 1), (0, 5)])
def test_evals_after_counts_the_loops_evaluations(max_iters, interval):
    # the loop evaluates at the top of iteration it when it % interval == 0 or it >= max_iters
    evals = [it for it in range(max_iters + 1) if it % interval == 0 or it >= max_iters]
    for it in range(max_iters + 1):
        assert train_parts.evals_after(it, max_iters, interval) == sum(e > it for e in evals), it


def test_eta_seconds():
    assert train_parts.eta_seconds([], 100, 3, [], 2.0) is None
    # 50 steps of 2 s; 2 evaluations, before one was measured each worth 3 steps (6 s)
    assert train_parts.eta_seconds([1.0, 3.0], 50, 2, [], 3.0) == 50 * 2 + 2 * 6
    assert train_parts.eta_seconds([2.0], 50, 2, [40.0, 9.0], 3.0) == 50 * 2 + 2 * 9  # the last measured one


def tiny_config(char_data, tmp_path, *args):
    args = [TINY, f'--dataset={char_data}', f'--out_dir={tmp_path}', *args]
    return SimpleNamespace(**load_config(train.DEFAULTS, args))


def test_a_slow_first_evaluation_does_not_inflate_the_eta(char_data, tmp_path, monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(train.time, 'time', clock)
    c = tiny_config(char_data, tmp_path, '--max_iters=20', '--eval_interval=10', '--eval_iters=6')
    evals, get_lr = [], train.get_lr

    def step_lr(it, c):  # every step 1 s; the first 50 s (warm-up), a slow stretch of 30 s steps at 3-5
        clock.now += 50 if it == 0 else 30 if 3 <= it <= 5 else 1
        return get_lr(it, c)

    def evaluate(model, paths, offsets, block_size, device, ctx, it, **hooks):
        # the first evaluation 1000 s (one-time costs), the next ones 5 s
        clock.now += 1000 if not evals else 5
        evals.append(it)
        return {'train': 1.0, 'val': 1.0}  # not stopped by a signal

    monkeypatch.setattr(train, 'get_lr', step_lr)  # called once per step, at its start
    monkeypatch.setattr(train, 'evaluate', evaluate)
    train.train(c)
    etas = dict(re.findall(r'^iter (\d+) \|.*\| eta (.*)$', capsys.readouterr().out, re.M))
    assert evals == [0, 10, 20]
    assert etas['0'] == 'after the first steps'
    # before the second evaluation one is estimated from the step time: 2 * 6 batches of
    # forwards against 2 micro-steps of forward + backward, 2 steps' worth
    assert etas['1'] == train_parts.eta(18 * 1 + 2 * 2)                 # 18 steps, evaluations at 10 and 20
    assert etas['5'] == train_parts.eta(14 * (2 + 30 * 3) / 5 + 2 * 2 * (2 + 30 * 3) / 5)  # the slow stretch counts
    assert etas['9'] == train_parts.eta(10 * (6 + 30 * 3) / 9 + 2 * 2 * (6 + 30 * 3) / 9)
    assert etas['15'] == train_parts.eta(4 * (12 + 30 * 3) / 15 + 1 * 5)  # the measured 5 s evaluation, not 1000 s
    assert etas['19'] == train_parts.eta(0 + 1 * 5)


def test_the_eta_forgets_a_slow_stretch_after_the_window(char_data, tmp_path, monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(train.time, 'time', clock)
    n = train_parts.ETA_WINDOW
    c = tiny_config(char_data, tmp_path, f'--max_iters={3 * n}', f'--eval_interval={10 * n}')
    get_lr = train.get_lr

    def step_lr(it, c):  # a slow first third, then 1 s steps
        clock.now += 20 if it < n else 1
        return get_lr(it, c)

    monkeypatch.setattr(train, 'get_lr', step_lr)  # called once per step, at its start
    monkeypatch.setattr(train, 'evaluate', lambda *args, **hooks: {'train': 1.0, 'val': 1.0})  # not stopped
    train.train(c)
    etas = dict(re.findall(r'^iter (\d+) \|.*\| eta (.*)$', capsys.readouterr().out, re.M))
    eval_steps = 2 * c.eval_iters / (3 * c.gradient_accumulation_steps)
    last = 2 * n - 1  # the window holds only 1 s steps from here on
    assert etas[str(last)] == train_parts.eta((3 * n - last - 1) + eval_steps)


def test_heartbeat_and_evaluation_progress(char_data, tmp_path, monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(train.time, 'time', clock)
    beat = train_parts.Heartbeat(every=10)  # the default is 5 s
    for _ in range(7):
        clock.now += 4
        beat('tick')
    assert capsys.readouterr().out == 'tick\n' * 2  # at 12 s and 24 s

    c = tiny_config(char_data, tmp_path, '--eval_iters=5')
    paths, meta = train_parts.data_paths(c.dataset)
    model, _, _ = train.build_model(c, meta)
    gen = torch.Generator().manual_seed(c.seed + 1)
    offsets = {split: train_parts.draw_offsets(gen, os.path.getsize(path) // 2, c.block_size,
                                         (c.eval_iters, c.batch_size)) for split, path in paths.items()}
    get_batch = train_parts.get_batch

    def slow_batch(*args):  # every batch 6 s
        clock.now += 6
        return get_batch(*args)

    monkeypatch.setattr(train_parts, 'get_batch', slow_batch)
    train_parts.evaluate(model.eval(), paths, offsets, c.block_size, 'cpu', nullcontext(), 0)
    lines = capsys.readouterr().out.splitlines()
    # every 5 s: here at the start of every batch but the first
    assert lines == [f'eval 0 | train batch {i}/5' for i in range(1, 5)] + [f'eval 0 | val batch {i}/5' for i in range(5)]


def test_block_size_errors_name_a_value_that_works(char_data, tmp_path, tiny_hf_dir):
    # a model with 128 positions (tiny_hf_dir) and a data set of 36,000 / 4,000 tokens
    with pytest.raises(ValueError, match=re.escape("longer than the model's 128 positions; use --block_size=128")):
        train.train(tiny_config(char_data, tmp_path, f'--init_from={tiny_hf_dir}', '--block_size=1024',
                                '--vocab_size=0'))
    with pytest.raises(ValueError, match=re.escape("has 4000 tokens, fewer than block_size + 1 = 5001; "
                                                   "use --block_size=3999 (or less)")):
        train.train(tiny_config(char_data, tmp_path, '--block_size=5000'))
    c = tiny_config(char_data, tmp_path, '--block_size=3999', '--n_embd=8', '--n_layer=1', '--n_head=1',
                    '--max_iters=0', '--eval_iters=1')
    train.train(c)
    assert c.block_size == 3999  # the suggestion is accepted
