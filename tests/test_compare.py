"""script/compare.py and script/stages.py: the parameter matching and the test text against independent
sources (model parameter counts, the data file), the statistics against direct computations, and one
reduced --quick run end to end (every kind of stage: kron_decompose.py, compress.py lowrank and
truncate, distillation, InRank's two stages, training from scratch, perplexity_eval.py), its parsed
logs checked against train.py's checkpoints."""
import json
import math
import os
import statistics
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from checkpoint import load_checkpoint
from model import GPT, GPTConfig

sys.path.insert(0, os.path.join(ROOT, 'script'))
import compare  # noqa: E402
import stages  # noqa: E402


@pytest.mark.parametrize('n_embd', [24, 96, 768])
def test_matched_rank_has_the_parameters_of_the_81m_like_kronecker(n_embd):
    base = dict(block_size=8, vocab_size=10, n_layer=2, n_head=4, n_embd=n_embd)
    with torch.device('meta'):
        kron = GPT(GPTConfig(**base, mlp='kron', kron_dim1=n_embd, kron_dim2=n_embd)).num_params()
        rank = compare.matched_rank(n_embd, n_embd * n_embd + 4)
        low = GPT(GPTConfig(**base, mlp='lowrank', lowrank_rank=rank)).num_params()
    # within half a rank per matrix (4 matrices)
    assert abs(low - kron) <= 4 * 5 * n_embd / 2


def test_every_variant_of_the_default_is_a_valid_model():
    """The shapes of the miniature's configs build, and the students are the sizes the claims assume."""
    s = compare.resolved(compare.TEACHER, [])
    base = dict(block_size=s['block_size'], vocab_size=143, n_layer=s['n_layer'], n_head=s['n_head'], n_embd=s['n_embd'])
    n = s['n_embd']
    with torch.device('meta'):
        teacher = GPT(GPTConfig(**base))
        k81 = GPT(GPTConfig(**base, mlp='kron', kron_dim1=n, kron_dim2=n))
        half = GPT(GPTConfig(**dict(base, n_layer=s['n_layer'] // 2)))
        f = {k: GPT(GPTConfig(**base, mlp='kron', kron_dim1=n // 3, kron_dim2=4 * n // 3, kron_factors=k))
             for k in (1, 2, 4)}
    assert teacher.mlp_params() / teacher.num_params() >= 0.6  # the MLPs are most of the model
    assert k81.num_params() <= 0.6 * teacher.num_params()
    assert abs(half.num_params() - k81.num_params()) / k81.num_params() < 0.015  # truncation ~ the 81M shape
    assert f[1].mlp_params() < f[2].mlp_params() < f[4].mlp_params() < teacher.mlp_params()


def test_test_text_is_whole_rows_of_the_test_split(tmp_path):
    path = stages.wikitext_test_head(5000, tmp_path / 'slice.txt')
    with open(os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.test.tokens'), encoding='utf-8') as f:
        rows = [r if r.strip() else '' for r in f]
    text = open(path, encoding='utf-8').read()
    n = next(n for n in range(1, len(rows)) if '\n\n'.join(rows[:n]) == text)
    assert sum(map(len, rows[:n])) >= 5000 > sum(map(len, rows[:n - 1]))


def test_claim_statistics():
    runs = [dict(name='a', seed=s, bpb=b) for s, b in enumerate([1.00, 1.02, 1.01])] + \
           [dict(name='b', seed=s, bpb=b) for s, b in enumerate([1.10, 1.11, 1.13])]
    c = compare.compare_pair(runs, 'a', 'b')
    diffs = [0.10, 0.09, 0.12]
    assert c['diff'] == pytest.approx(statistics.mean(diffs))
    assert c['se'] == pytest.approx(statistics.stdev(diffs) / math.sqrt(3))
    assert c['verdict'] == 'holds' and compare.compare_pair(runs, 'b', 'a')['verdict'] == 'reversed'
    noisy = [dict(name='a', seed=s, bpb=b) for s, b in enumerate([1.0, 1.2, 0.9])] + \
            [dict(name='b', seed=s, bpb=b) for s, b in enumerate([1.1, 1.0, 1.0])]
    assert compare.compare_pair(noisy, 'a', 'b')['verdict'] == 'within noise'
    # a claim of no difference holds within noise and fails on a clear difference either way
    assert compare.claim_verdict(compare.compare_pair(noisy, 'a', 'b'), 'equal') == 'holds'
    assert compare.claim_verdict(c, 'equal') == 'does not hold: a is better'
    assert compare.claim_verdict(compare.compare_pair(runs, 'b', 'a'), 'equal') == 'does not hold: a is better'
    assert compare.gap_kept(2.0, 2.0, 7.0) == 1.0 and compare.gap_kept(7.0, 2.0, 7.0) == 0.0
    assert compare.gap_kept(3.0, 2.0, 7.0) == pytest.approx(0.8)


QUICK_ONLY = ['vl_norm', 'lowrank', 'truncate_kd', 'inrank', 'scratch']


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp('compare')
    r = subprocess.run([sys.executable, 'script/compare.py', '--quick', '--only', ','.join(QUICK_ONLY), '--out', str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, json.loads((out / 'results.json').read_text()), r.stdout


def test_quick_run_writes_every_result(quick):
    out, res, stdout = quick
    assert sorted({r['name'] for r in res['runs']}) == sorted(QUICK_ONLY)
    md = (out / 'results.md').read_text()
    for label in ('low-rank SVD', 'half the layers + distillation', 'InRank from scratch', 'dense from scratch'):
        assert f'| {label}' in md
    assert '| Kronecker beats low-rank SVD at equal size | vl_norm better than lowrank |' in md
    assert (out / 'val_curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '[5/5]' in stdout and 'left' in stdout  # progress with an estimate
    assert res['settings']['dataset'] == str(out / 'data')  # the quick run's own copy of the data


def test_quick_run_figures_agree_with_the_checkpoints(quick):
    out, res, _ = quick
    s = res['settings']
    teacher = res['teacher']
    best = load_checkpoint(str(out / 'teacher' / 'best.pt'))
    assert [e[0] for e in teacher['evals']] == [0, 6, 12]  # the quick teacher: 12 steps, an eval every 6
    assert min(e[2] for e in teacher['evals']) == pytest.approx(best['best_val_loss'], abs=1e-4)
    assert teacher['params'] == GPT(GPTConfig(**best['model_args'])).num_params('paper')
    runs = {r['name']: r for r in res['runs']}
    for name, r in runs.items():
        ckpt = load_checkpoint(str(out / 'runs' / f'{name}_s0' / 'best.pt'))
        assert min(e[2] for e in r['evals']) == pytest.approx(ckpt['best_val_loss'], abs=1e-4)
        ppl = json.loads((out / 'ppl' / f'{name}_s0.json').read_text())
        assert r['bpb'] == next(iter(ppl['results'].values()))['bpb']
        assert ckpt['vocab']['itos'] == best['vocab']['itos']  # the character vocabulary travels along
    # every student trained on the same number of steps; InRank's two stages add up to it
    assert all(r['evals'][-1][0] == s['student_iters'] for r in runs.values())
    assert runs['inrank']['rank_changes']  # train.py logged the rank growth
    stage2 = load_checkpoint(str(out / 'runs' / 'inrank_s0' / 'best.pt'))
    assert stage2['model_args']['lowrank_rank'] == runs['inrank']['rank']
    assert s['inrank_init_modes'] <= runs['inrank']['rank'] <= s['n_embd'] // 2 - s['inrank_buffer_modes']
    assert runs['truncate_kd']['params'] < teacher['params'] and runs['lowrank']['mlp_params'] < teacher['mlp_params']


def test_report_rewrites_the_same_tables_from_results_json(quick):
    out, _, _ = quick
    md = (out / 'results.md').read_text()
    (out / 'results.md').unlink()
    r = subprocess.run([sys.executable, 'script/compare.py', '--report', '--out', str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / 'results.md').read_text() == md
