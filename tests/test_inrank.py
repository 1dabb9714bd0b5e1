"""inrank.py: the explained ratio against an independent numpy computation, the singular values
against a full SVD, rank growth on a regression with a known rank, InRank's float32 comparison and
initialisation, and train.py's check schedule counted in forward calls against a direct
implementation of InRank's counter, through stage 2's continued run."""
import math
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import inrank
from cli_runs import torchrun
from conftest import ROOT
from factored import LowRankLinear
from model import GPT, GPTConfig
from train import get_lr


def test_singular_values_equal_full_svd_of_the_active_product():
    torch.manual_seed(0)
    lin = LowRankLinear(48, 80, 24)
    lin.set_active_rank(10)
    expected = torch.linalg.svdvals(lin.U[:, :10] @ lin.V[:10]).detach()
    s = inrank.singular_values(lin)
    assert s.shape == (48,)
    torch.testing.assert_close(s[:10], expected[:10], rtol=1e-4, atol=1e-6)
    assert torch.all(s[10:] == 0) and expected[10:].max() < 1e-5


@pytest.mark.parametrize('k', [0, 1, 3, 7, 15])
def test_explained_ratio_zeroes_the_leading_entries_keeping_the_length(k):
    s = torch.sort(torch.rand(20, generator=torch.Generator().manual_seed(k)) ** 3, descending=True)[0]
    s[12:] = 0
    a = s.numpy().astype(np.float64)
    tail = np.concatenate([np.zeros(k), a[k:]])
    expected = 1 - np.var(tail, ddof=1) / np.var(a, ddof=1)
    assert inrank.explained_ratio(s, k) == pytest.approx(expected, abs=1e-6)
    # not the variance of the shorter vector s[k:] (for k > 0 the numbers differ)
    if 0 < k < 12:
        assert abs(inrank.explained_ratio(s, k) - (1 - np.var(a[k:], ddof=1) / np.var(a, ddof=1))) > 1e-3


def test_next_modes_finds_the_number_of_strong_modes():
    s = torch.cat([torch.full((6,), 5.0), torch.full((10,), 0.01), torch.zeros(48)])  # 64 values
    # 6 strong values pass 0.9 at k=6 and not before
    assert inrank.explained_ratio(s, 5) < 0.9 < inrank.explained_ratio(s, 6)
    assert inrank.next_modes(s, current=2, buffer_modes=10, max_rank=32, threshold=0.9) == 6
    # growth per check is capped below the buffer, and never goes back
    assert inrank.next_modes(s, current=2, buffer_modes=3, max_rank=32, threshold=0.9) == 4
    assert inrank.next_modes(s, current=9, buffer_modes=10, max_rank=32, threshold=0.9) == 9
    # current + buffer never passes the maximum rank
    assert inrank.next_modes(s, current=2, buffer_modes=10, max_rank=14, threshold=0.99) == 3
    # buffer_modes = 0 leaves the rank alone (InRank's loop has no index to return there)
    assert inrank.next_modes(s, current=2, buffer_modes=0, max_rank=32, threshold=0.9) == 2


@pytest.mark.parametrize('threshold', [0.8, 0.99, 0.9, 0.5])
def test_threshold_is_compared_in_float32_as_inrank_compares(threshold, monkeypatch):
    # InRank: `ratio > threshold` with ratio a float32 tensor and threshold a python float
    tie = float(np.float32(threshold))  # a ratio that equals float32(threshold)
    original = bool(torch.tensor(tie, dtype=torch.float32) > threshold)
    assert inrank.passes(tie, threshold) == original
    assert inrank.passes(float(np.nextafter(np.float32(tie), np.float32(2))), threshold)
    if tie > threshold:  # 0.8 and 0.99 round up in float32: a float64 comparison would let the tie pass
        assert not original
        # next_modes: the tie at k=current does not stop the growth, the next value does
        monkeypatch.setattr(inrank, 'explained_ratio', lambda s, k: tie if k == 3 else 1.0)
        assert inrank.next_modes(torch.ones(8), current=3, buffer_modes=4, max_rank=32, threshold=threshold) == 4


def test_rank_grows_to_a_known_rank_and_never_shrinks():
    torch.manual_seed(0)
    n, true_rank, buffer = 64, 6, 3
    Q1, _ = torch.linalg.qr(torch.randn(n, true_rank))
    Q2, _ = torch.linalg.qr(torch.randn(n, true_rank))
    W = Q1 @ torch.diag(torch.linspace(3, 2, true_rank)) @ Q2.t()
    lin = LowRankLinear(n, n, 32, bias=False)
    net = torch.nn.Sequential(lin)
    inrank.start(net, init_modes=1, buffer_modes=buffer)
    assert lin.rank == 1 + buffer
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    schedule = inrank.Schedule('step', warmup_iter=20, gap_iter=10)
    ranks = [lin.rank]
    for step in range(1, 301):
        x = torch.randn(128, n)
        loss = ((net(x) - x @ W) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        # the ranks not yet in use get exactly zero gradient
        assert lin.U.grad[:, lin.rank:].abs().max() == 0 and lin.V.grad[lin.rank:].abs().max() == 0
        opt.step()
        if schedule.advance('step'):
            for _, old, new in inrank.check(net, threshold=0.9, buffer_modes=buffer):
                assert 0 < new - old < buffer
        ranks.append(lin.rank)
    assert ranks == sorted(ranks) and ranks[-1] > ranks[0]
    assert inrank.ranks_found(net, buffer) == {'0': true_rank}
    assert loss.item() < 1e-4


def inrank_counter(events, warmup_iter, gap_iter):
    """InRank's layer, directly: per forward call, iter += 1, then a check when
    iter > warmup_iter and iter % gap_iter == 0. events: labels of the forward calls in order;
    returns the labels of the calls that check."""
    checks, it = [], 0
    for label in events:
        it += 1
        if it > warmup_iter and it % gap_iter == 0:
            checks.append(label)
    return checks


def test_schedule_counts_units_as_inrank_does():
    s = inrank.Schedule('forward', warmup_iter=200, gap_iter=25)
    # InRank's GPT-2 stage 1: 2 start-up validation batches, then 8 micro-batches in each of 130 steps
    events = [('eval', 0)] * 2 + [('step', i) for i in range(130) for _ in range(8)]
    due = [e for e in events if s.advance('forward')]
    assert due == inrank_counter(events, 200, 25)
    assert due[0] == ('step', 27) and len(due) == 33  # the first check inside step 28, after 27 steps
    assert not s.advance('step') and s.count == 2 + 130 * 8  # optimizer steps are not its unit
    steps = inrank.Schedule('step', warmup_iter=20, gap_iter=5)
    assert [i for i in range(1, 41) if steps.advance('step')] == [25, 30, 35, 40]
    assert not steps.advance('forward') and steps.count == 40
    with pytest.raises(ValueError, match="inrank_unit='epoch'"):
        inrank.Schedule('epoch', 1, 1)
    with pytest.raises(ValueError, match='inrank_gap_iter=0'):
        inrank.Schedule('step', 1, 0)


def test_check_grows_a_full_looking_product():
    torch.manual_seed(1)
    net = torch.nn.Sequential(LowRankLinear(32, 32, 16, bias=False))
    with torch.no_grad():  # a full-rank-looking product: every check wants to grow
        net[0].U.normal_()
        net[0].V.normal_()
    inrank.start(net, 1, 2)
    assert inrank.check(net, threshold=0.99, buffer_modes=2) == [('0', 3, 4)]


def test_start_checks_the_budget_and_the_model_kind():
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16, mlp='lowrank'))
    inrank.start(model, 2, 4)  # max rank min(16, 64) // 2 = 8
    assert [lin.rank for _, lin in model.mlp_linears()] == [6, 6]
    with pytest.raises(ValueError, match='allocated ranks'):
        inrank.start(model, 2, 7)
    with pytest.raises(ValueError, match="mlp='lowrank'"):
        inrank.start(GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16)), 2, 4)


def test_active_rank_survives_a_checkpoint_round_trip():
    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16, mlp='lowrank')
    model = GPT(cfg)
    inrank.start(model, 1, 2)
    model.transformer.h[0].mlp.c_proj.set_active_rank(5)
    again = GPT(cfg)
    again.load_state_dict(model.state_dict())
    assert [lin.rank for _, lin in again.mlp_linears()] == [3, 5]
    idx = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(again(idx)[0], model(idx)[0], rtol=0, atol=0)


def test_inrank_initialisation_is_kaiming_uniform_of_inranks_factors():
    # kaiming_uniform_(a=sqrt(5)): bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2));
    # InRank's A (R, in) has fan-in `in`, its B (out, R) fan-in R; U = A^T, V = B^T
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=4, n_embd=64, mlp='lowrank',
                          lowrank_init='inrank'))
    for name, lin in model.mlp_linears():
        n_in, R = lin.U.shape
        for t, fan_in in ((lin.U, n_in), (lin.V, R)):
            bound = math.sqrt(2 / (1 + 5)) * math.sqrt(3 / fan_in)
            assert bound == pytest.approx(1 / math.sqrt(fan_in))
            a = t.detach().abs()
            assert a.max() <= bound and a.max() > 0.95 * bound, name  # GPT's init left them alone
            assert t.detach().var().item() == pytest.approx(bound ** 2 / 3, rel=0.1)  # uniform's variance
        assert lin.U.shape[1] == min(lin.in_features, lin.out_features) // 2
        assert torch.all(lin.bias == 0)
    # the project's default stays GPT-2-like: U ~ N(0, 0.02^2)
    default = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=4, n_embd=64, mlp='lowrank'))
    assert default.transformer.h[0].mlp.c_fc.U.std().item() == pytest.approx(0.02, rel=0.1)
    with pytest.raises(ValueError, match="lowrank_init='xavier'"):
        GPTConfig(mlp='lowrank', lowrank_init='xavier')


# -----------------------------------------------------------------------------
# train.py's schedule in forward calls, and stage 2 continuing stage 1

TINY = os.path.join(ROOT, 'config', 'test_tiny.py')
# 8 micro-batches per step and 2 forwards per evaluation (eval_iters=1, two splits), as InRank's
# GPT-2 run per process; threshold 1.0 is never passed, so every check grows the rank and is logged
RUN = ['--gradient_accumulation_steps=8', '--batch_size=1', '--eval_iters=1', '--eval_interval=20',
       '--log_interval=1', '--warmup_iters=10', '--lr_decay_iters=100', '--block_size=16']
STAGE1 = RUN + ['--mlp=lowrank', '--lowrank_init=inrank', '--n_layer=1', '--inrank=True',
                '--inrank_unit=forward', '--inrank_init_modes=1', '--inrank_buffer_modes=2',
                '--inrank_threshold=1.0', '--inrank_warmup_iter=200', '--inrank_gap_iter=25']


def train(*args):
    out = subprocess.run([sys.executable, 'train.py', TINY, *args], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def check_iters(stdout):
    return [int(i) for i in re.findall(r'^inrank (\d+) \| forward \d+ \| ', stdout, re.M)]


def forward_events(max_iters, eval_interval, eval_iters=1, micro=8):
    """train.py's forward calls in order, labelled by iteration: evaluations (two splits) at
    multiples of eval_interval and at the end, micro-batches of each step."""
    events = []
    for it in range(max_iters + 1):
        if it % eval_interval == 0 or it == max_iters:
            events += [it] * 2 * eval_iters
        if it < max_iters:
            events += [it] * micro
    return events


@pytest.fixture(scope='module')
def stage1(char_data, tmp_path_factory):
    """A stage-1 run of 35 steps, stopped after 20 and resumed: (out_dir, log of both parts)."""
    out_dir = tmp_path_factory.mktemp('stage1')
    first = train(f'--dataset={char_data}', f'--out_dir={out_dir}', '--max_iters=20', *STAGE1)
    return out_dir, first + train(f'--dataset={char_data}', f'--out_dir={out_dir}', '--max_iters=35',
                                  '--init_from=resume', *STAGE1)


def test_train_checks_on_inranks_forward_count_across_a_resume(stage1):
    out_dir, stdout = stage1
    events = forward_events(35, 20)
    expected = inrank_counter(events, 200, 25)
    assert check_iters(stdout) == expected == [27, 30, 33]  # 2 + 20 * 8 + 2 + 7 * 8 + 5 = 225: step 28
    assert torch.load(out_dir / 'ckpt.pt', weights_only=False)['inrank_count'] == len(events)


def test_stage2_continues_stage1s_run(stage1, char_data, tmp_path):
    out_dir, _ = stage1
    ckpt1 = torch.load(out_dir / 'ckpt.pt', weights_only=False)
    r = subprocess.run([sys.executable, 'compress.py', 'lowrank', 'found', '--from', str(out_dir / 'ckpt.pt'),
                        '--resume_dir', str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ckpt2 = torch.load(tmp_path / 'ckpt.pt', weights_only=False)
    k = ckpt2['model_args']['lowrank_rank']
    assert k == 1 + 3  # init_modes 1 grown by the 3 checks
    assert ckpt2['iter_num'] == ckpt1['iter_num'] == 35
    stdout = train(f'--dataset={char_data}', f'--out_dir={tmp_path}', '--init_from=resume', '--max_iters=37', *RUN)
    # the step count and the learning-rate schedule go on from stage 1 (config/test_tiny.py's rates)
    lrs = {int(i): float(lr) for i, lr in re.findall(r'^iter (\d+) \| loss \S+ \| lr (\S+)', stdout, re.M)}
    c = SimpleNamespace(decay_lr=True, learning_rate=1e-3, warmup_iters=10, lr_decay_iters=100, min_lr=1e-4)
    assert sorted(lrs) == [35, 36] and lrs[35] == pytest.approx(get_lr(35, c), rel=1e-3)
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=False)['iter_num'] == 37


def test_inrank_configs_reproduce_inranks_gpt2_runs():
    from configurator import load_config
    import train as train_module
    load = lambda name: load_config(train_module.DEFAULTS, [os.path.join(ROOT, 'config', 'baselines', name)])
    s1, s2 = load('inrank_stage1.py'), load('inrank_stage2.py')
    # 512 sequences of 1024 tokens per step, 8 micro-batches per process on 8 processes
    assert s1['gradient_accumulation_steps'] // 8 == 8 and s1['batch_size'] * s1['gradient_accumulation_steps'] == 512
    assert (s1['max_iters'], s1['inrank_unit'], s1['inrank_warmup_iter'], s1['inrank_gap_iter']) == (130, 'forward', 200, 25)
    assert (s1['inrank_init_modes'], s1['inrank_buffer_modes'], s1['inrank_threshold']) == (2, 100, 0.9)
    assert s1['eval_iters'] // 8 * 2 == 2  # the two start-up batches of each process
    assert s1['dataset'] == 'wikitext103' and s1['lowrank_init'] == 'inrank' and s1['mlp'] == 'lowrank'
    # stage 2 resumes the same run: every setting of the schedule and the optimizer is stage 1's
    same = ('learning_rate', 'min_lr', 'warmup_iters', 'lr_decay_iters', 'weight_decay', 'beta1', 'beta2',
            'grad_clip', 'batch_size', 'gradient_accumulation_steps', 'block_size', 'dtype', 'dataset')
    assert all(s1[k] == s2[k] for k in same) and s2['init_from'] == 'resume' and s2['max_iters'] == 22500
    fixed = load('inrank_fixed_rank.py')
    assert (fixed['inrank_init_modes'], fixed['inrank_buffer_modes']) == (254, 0) and fixed['inrank_warmup_iter'] > 10 ** 8
    for size, shape, lr in (('m', (24, 16, 1024), 1.5e-4), ('l', (36, 20, 1280), 1.5e-4)):
        a, b = load(f'inrank_gpt2{size}_stage1.py'), load(f'inrank_gpt2{size}_stage2.py')
        assert (a['n_layer'], a['n_head'], a['n_embd']) == shape and a['batch_size'] * a['gradient_accumulation_steps'] == 512
        assert all(a[k] == b[k] for k in same) and a['learning_rate'] == lr and a['dtype'] == 'float32'


def test_processes_count_in_lockstep_when_evaluation_batches_do_not_split_evenly(char_data, tmp_path):
    # 2 processes, 8 micro-batches per step each (16 global), eval_iters=1: process 1 has no
    # evaluation batch of its own and counts the one it would get from a padded sampler
    out = torchrun(['train.py', TINY, f'--dataset={char_data}', f'--out_dir={tmp_path}', '--max_iters=16',
                    *STAGE1, '--gradient_accumulation_steps=16', '--eval_interval=5',
                    '--inrank_warmup_iter=60', '--inrank_gap_iter=7'])
    expected = inrank_counter(forward_events(16, 5), 60, 7)
    assert len(expected) > 5 and check_iters(out.stdout) == expected
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=False)
    assert torch.equal(ckpt['weight_sums'][0], ckpt['weight_sums'][1])  # both processes grew the same ranks
