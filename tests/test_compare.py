"""script/compare.py and script/stages.py: the parameter matching and the test text against independent
sources (model parameter counts, the data file), the statistics against values worked out by hand
or from closed forms, and two reduced --quick runs end to end: the first with two teachers, the
rate grid, the distillation factor, the longer check and the structure diagnostics, its figures
checked against train.py's checkpoints and perplexity_eval.py's files and its report rewritten byte
for byte; the second reusing the first's teachers (--teacher, --only), which must reproduce a row's
figures exactly, and running InRank's two stages."""
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


def test_every_row_named_in_the_design_exists():
    table = compare.variants(dict(n_embd=96))
    named = {*compare.DEFAULT_ROWS, *compare.LONG_KRON, *compare.LONG_OTHERS,
             *(x for _, pairs, _ in compare.CLAIMS for pair in pairs for x in pair),
             *(x for pair in compare.DISTIL_PAIRS for x in pair)}
    assert named <= set(table)
    # distillation is the only difference between a row and its _kd twin
    for name in ('vl_norm', 'lowrank', 'truncate'):
        assert table[f'{name}_kd'][1] == table[name][1] and table[f'{name}_kd'][2] == compare.DISTIL


def test_test_text_is_whole_rows_of_the_test_split(tmp_path):
    path = stages.wikitext_test_head(5000, tmp_path / 'slice.txt')
    with open(os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.test.tokens'), encoding='utf-8') as f:
        rows = [r if r.strip() else '' for r in f]
    text = open(path, encoding='utf-8').read()
    n = next(n for n in range(1, len(rows)) if '\n\n'.join(rows[:n]) == text)
    assert sum(map(len, rows[:n])) >= 5000 > sum(map(len, rows[:n - 1]))


def test_student_t_against_known_values():
    # two-sided 95% quantiles from the t table; df=1 is Cauchy: p = 1 - 2 atan(t) / pi;
    # df=2 has p = 1 - t / sqrt(t^2 + 2)
    for df, q in ((1, 12.706204736174698), (2, 4.302652729749464), (4, 2.7764451051977934), (30, 2.042272456301238)):
        assert compare.t_quantile(0.975, df) == pytest.approx(q, rel=1e-9)
    assert compare.t_two_sided_p(3.0, 1) == pytest.approx(1 - 2 * math.atan(3.0) / math.pi, rel=1e-12)
    assert compare.t_two_sided_p(2.0, 2) == pytest.approx(1 - 2 / math.sqrt(6), rel=1e-12)
    assert compare.t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    # I_x(2, 3) = sum_{j=2..4} C(4, j) x^j (1 - x)^(4 - j) = 11/16 at x = 1/2; I_x(a, 1) = x^a
    assert compare.betainc(2, 3, 0.5) == pytest.approx(11 / 16, rel=1e-12)
    assert compare.betainc(2.5, 1, 0.3) == pytest.approx(0.3 ** 2.5, rel=1e-12)
    # [1, 2, 3]: mean 2, sd 1, half-width 4.302653 / sqrt(3)
    m, half = compare.t_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and half == pytest.approx(2.4841377118, rel=1e-9)
    assert compare.t_interval([1.5]) == (1.5, None)


def test_holm_against_hand_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert compare.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert compare.holm([0.5, None, 0.6]) == [1.0, None, 1.0]
    assert compare.holm([0.02]) == [0.02]


def test_bigram_bits_per_byte_by_hand():
    # train 0 1 0 1 2 (vocab 3): counts (0,1)=2, (1,0)=1, (1,2)=1; add-one: P(1|0) = 3/5,
    # P(2|1) = 2/5, P(0|2) = 1/3; test 0 1 2 0 over 3 bytes: log2(5/3 * 5/2 * 3) / 3 = log2(12.5) / 3
    assert compare.bigram_bpb([0, 1, 0, 1, 2], [0, 1, 2, 0], 3, 3) == pytest.approx(math.log2(12.5) / 3, rel=1e-12)


def test_paired_comparisons_and_verdicts():
    runs = [dict(name='a', teacher=t, bpb=b) for t, b in enumerate([1.00, 1.02, 1.01])] + \
           [dict(name='b', teacher=t, bpb=b) for t, b in enumerate([1.10, 1.11, 1.13])] + \
           [dict(name='c', teacher=t, bpb=b) for t, b in enumerate([1.0, 1.2, 0.9])]
    (ab, ba, ac) = compare.comparisons(runs, [('a', 'b'), ('b', 'a'), ('a', 'c')])
    diffs = [0.10, 0.09, 0.12]  # mean 0.10333, sd 0.015275
    t = statistics.mean(diffs) / (statistics.stdev(diffs) / math.sqrt(3))
    assert ab['diff'] == pytest.approx(0.1033333333) and ab['half'] == pytest.approx(4.302652729749464 * 0.0152752523 / math.sqrt(3))
    assert ab['p'] == pytest.approx(1 - t / math.sqrt(t * t + 2))  # df = 2's closed form
    # Holm: the two smallest (ab, ba: equal) times 3 and 2, the largest (ac) times 1
    t_ac = statistics.mean([0.0, 0.18, -0.11]) / (statistics.stdev([0.0, 0.18, -0.11]) / math.sqrt(3))
    assert ac['p'] == pytest.approx(1 - t_ac / math.sqrt(t_ac * t_ac + 2))
    assert ab['p_holm'] == pytest.approx(3 * ab['p']) and ac['p_holm'] == pytest.approx(ac['p'])
    assert compare.verdict(ab, 'better') == 'holds' and compare.verdict(ba, 'better') == 'reversed'
    assert compare.verdict(ac, 'better') == 'undetermined'
    assert compare.verdict(ab, 'equal') == 'reversed (a is better)'
    assert compare.verdict(ac, 'equal') == 'undetermined'  # not significant, but the interval is wide
    assert compare.verdict(dict(diff=0.001, half=0.005, p_holm=0.8), 'equal') == 'holds'
    assert compare.choose_lr([[1e-3, 1.9], [3e-3, 1.8], [1e-2, 1.8]]) == 3e-3  # a tie: the smaller rate
    assert compare.gap_kept(2.0, 2.0, 7.0) == 1.0 and compare.gap_kept(7.0, 2.0, 7.0) == 0.0
    assert compare.gap_kept(3.0, 2.0, 7.0) == pytest.approx(0.8)


QUICK_ONLY = ['vl_norm', 'vl_norm_kd', 'lowrank', 'truncate_kd']


def compare_run(*args):
    return subprocess.run([sys.executable, 'script/compare.py', *map(str, args)], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp('compare')
    r = compare_run('--quick', '--only', ','.join(QUICK_ONLY), '--out', out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, json.loads((out / 'results.json').read_text()), r.stdout


def test_quick_run_writes_every_result(quick):
    out, res, stdout = quick
    assert [t['seed'] for t in res['teachers']] == [0, 1]
    assert sorted((r['name'], r['teacher']) for r in res['runs']) == sorted((n, t) for n in QUICK_ONLY for t in (0, 1))
    md = (out / 'results.md').read_text()
    for label in ('low-rank SVD', 'half the layers + distillation', '81M-like VL + normalisation + distillation'):
        assert f'| {label}' in md
    assert '| Kronecker beats low-rank SVD at equal size | vl_norm better than lowrank |' in md
    assert '| distillation gives the Kronecker student no gain | vl_norm_kd equal to vl_norm |' in md
    assert '| vl_norm | ' in md.split('The distillation factor')[1]  # the distillation table
    assert 'Longer training (2x' in md and 'Structure of the teachers' in md
    assert (out / 'val_curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'left' in stdout  # progress with an estimate
    assert res['settings']['dataset'] == str(out / 'data')  # the quick run's own copy of the data
    assert 0 < res['bigram_bpb'] < res['fresh_bpb']


def test_quick_rates_chosen_on_validation_before_any_test(quick):
    out, res, _ = quick
    for name in QUICK_ONLY:
        # the grid's losses are the checkpoints' own, and the chosen rate has the lowest
        vals = {lr: load_checkpoint(str(out / 'runs' / f'{compare.run_key(0, name, lr)}' / 'best.pt'))['best_val_loss']
                for lr in res['settings']['lr_grid']}
        assert [v for _, v in res['grid'][name]] == pytest.approx([vals[lr] for lr in res['settings']['lr_grid']], abs=1e-4)
        assert res['chosen'][name] == min(vals, key=vals.get)
        assert all(r['lr'] == res['chosen'][name] for r in res['runs'] if r['name'] == name)
        # the test text was scored for the chosen rate only; the other teacher ran the chosen rate only
        for lr in res['settings']['lr_grid']:
            assert (out / 'ppl' / f'{compare.run_key(0, name, lr)}.json').exists() == (lr == res['chosen'][name])
            assert (out / 'runs' / compare.run_key(1, name, lr)).exists() == (lr == res['chosen'][name])


def test_quick_figures_agree_with_the_checkpoints(quick):
    from kron_decompose import model_structure
    from checkpoint import load_model
    out, res, _ = quick
    s = res['settings']
    for t in res['teachers']:
        ckpt = str(out / 'teachers' / f"t{t['seed']}" / 'best.pt')
        best = load_checkpoint(ckpt)
        assert [e[0] for e in t['evals']] == [0, 6, 12]  # the quick teacher: 12 steps, an eval every 6
        assert t['best_val'] == best['best_val_loss'] == pytest.approx(min(e[2] for e in t['evals']), abs=1e-4)
        assert t['params'] == GPT(GPTConfig(**best['model_args'])).num_params('paper')
        for got, want in zip(t['structure'], model_structure(load_model(ckpt)[0], s['n_embd'], s['n_embd'], 1), strict=True):
            assert got['layer'] == want['layer'] and got['svd_rank'] == want['svd_rank']
            assert [got[k] for k in ('sigma_ratio', 'vl_energy', 'random_share', 'svd_rel_err')] == pytest.approx(
                [want[k] for k in ('sigma_ratio', 'vl_energy', 'random_share', 'svd_rel_err')], rel=1e-9)
    for r in res['runs'] + res['long']:
        key = compare.run_key(r['teacher'], r['name'], r['lr'], r in res['long'])
        ckpt = load_checkpoint(str(out / 'runs' / key / 'best.pt'))
        assert r['best_val'] == pytest.approx(ckpt['best_val_loss'], abs=1e-4)
        assert r['bpb'] == next(iter(json.loads((out / 'ppl' / f'{key}.json').read_text())['results'].values()))['bpb']
        assert ckpt['config']['freeze_pos_emb'] and ckpt['config']['learning_rate'] == r['lr']
        assert bool(ckpt['config']['kd_teacher']) == r['name'].endswith('_kd')
    assert all(r['evals'][-1][0] == s['student_iters'] for r in res['runs'])
    # the longer check: the best 81M-like Kronecker row on validation, low-rank, truncation + KD
    kron = min(('vl_norm', 'vl_norm_kd'), key=lambda n: next(r['best_val'] for r in res['runs'] if r['name'] == n and r['teacher'] == 0))
    assert [r['name'] for r in res['long']] == [kron, 'lowrank', 'truncate_kd']
    assert all(r['evals'][-1][0] == s['student_iters'] * s['long_factor'] and r['teacher'] == 0 for r in res['long'])


def test_report_rewrites_results_md_byte_for_byte(quick):
    out, _, _ = quick
    md = (out / 'results.md').read_bytes()
    (out / 'results.md').unlink()
    (out / 'val_curves.png').unlink()
    r = compare_run('--report', '--out', out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / 'results.md').read_bytes() == md and (out / 'val_curves.png').exists()


def test_reused_teachers_reproduce_a_row_exactly(quick, tmp_path):
    out, res, _ = quick
    again = tmp_path / 'again'
    r = compare_run('--quick', '--only', 'vl_norm_kd,inrank', '--teacher', out, '--out', again)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res2 = json.loads((again / 'results.json').read_text())
    assert not (again / 'teachers').exists() and res2['teachers'] == res['teachers']  # no teacher trained
    assert res2['grid']['vl_norm_kd'] == res['grid']['vl_norm_kd']
    pick = lambda rr: [(r['teacher'], r['lr'], r['best_val'], r['bpb'], r['evals']) for r in rr['runs'] if r['name'] == 'vl_norm_kd']
    assert pick(res2) == pick(res)
    # InRank's two stages: the rank it found is the stage-2 checkpoint's, and the steps add up
    for r in (r for r in res2['runs'] if r['name'] == 'inrank'):
        stage2 = load_checkpoint(str(again / 'runs' / compare.run_key(r['teacher'], 'inrank', r['lr']) / 'best.pt'))
        assert stage2['model_args']['lowrank_rank'] == r['rank'] and r['rank_changes']
        assert r['evals'][-1][0] == res2['settings']['student_iters']
    # a rerun in the same folder trains nothing: every stage is cached
    logs = {p.name: p.stat().st_mtime_ns for p in (again / 'logs').iterdir()}
    r = compare_run('--quick', '--only', 'vl_norm_kd,inrank', '--teacher', out, '--out', again)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in (again / 'logs').iterdir()} == logs


def test_refusals(quick, tmp_path):
    out, _, _ = quick
    cases = [(['--quick', '--teacher', f'{out},{out},{out}', '--out', tmp_path / 'a'], 'one checkpoint per teacher'),
             (['--teacher', out, '--out', tmp_path / 'b'], 'other settings'),
             (['--out', out], 'another design'),
             (['--quick', '--only', 'nope', '--out', tmp_path / 'c'], "unknown rows ['nope']")]
    for args, expected in cases:
        r = compare_run(*args)
        assert r.returncode == 1 and r.stderr.startswith('error:') and expected in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
