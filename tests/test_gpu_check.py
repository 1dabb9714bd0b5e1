"""script/gpu_check.py's dry run (--device cpu, tiny shapes): every check runs and passes, and what it
writes agrees with independent counts and with the logs it keeps; a failed check makes the exit
status 1. No timing is asserted."""
import json
import math
import os
import statistics
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
import kron_fast

sys.path.insert(0, os.path.join(ROOT, 'script'))
import gpu_check  # noqa: E402


@pytest.fixture(scope='module')
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_check')
    r = subprocess.run([sys.executable, 'script/gpu_check.py', '--device', 'cpu', '--out', str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with open(out / 'results.json') as f:
        return out, json.load(f)


def test_every_check_ran(dry):
    out, res = dry
    assert res['status'] == {'kron': 'passed', 'paths': 'measured', 'bench': 'passed', 'train': 'passed',
                             'ppl': 'passed'}
    assert res['passed'] and res['dry_run'] and not res['errors']
    assert sorted(os.listdir(out)) == ['bench_bf16.json', 'bench_fp32.json', 'log.txt', 'results.json', 'summary.md']
    summary = (out / 'summary.md').read_text()
    assert 'PASSED' in summary and 'FAILED' not in summary
    for heading in ('## kron', '## paths', '## bench', '## train', '## ppl'):
        assert heading in summary


def test_kron_rows_cover_every_path_order_dtype_and_shape(dry):
    _, res = dry
    rows = res['kron']
    shapes = [s[0] for s in gpu_check.DRY['shapes']]
    # per shape: 2 layers x 3 paths x 4 feature orders x 2 dtypes, and the MLP 4 ways x 2 dtypes
    assert len(rows) == len(shapes) * (2 * 3 * 4 * 2 + 4 * 2)
    for label, _, _, f in gpu_check.DRY['shapes']:
        layer = [r for r in rows if r['shape'] == label and r['layer'] != 'mlp']
        combos = {(r['layer'], r['path'], r['permuted_in'], r['permuted_out'], r['dtype']) for r in layer}
        assert len(combos) == len(layer) == 48
        for r in layer:
            assert set(r['errors']) == {'y', 'x', 'A', 'B', 'bias'} | ({'scale'} if f > 1 else set())
    for r in rows:
        assert r['passed']
        # fp32 agrees with float64 to rounding; bf16 visibly does not, so autocast really ran
        if r['dtype'] == 'fp32':
            assert r['errors']['y'] < 1e-5
        else:
            assert 1e-4 < r['errors']['y'] < gpu_check.TOL['bf16'][0]
    mlp = [r['path'] for r in rows if r['layer'] == 'mlp' and r['dtype'] == 'fp32']
    assert sum(p.startswith('chosen: ') for p in mlp) == len(shapes)


def test_paths_pick_and_suggestion_agree_with_the_timings(dry):
    _, res = dry
    rows, s = res['paths']['rows'], res['paths']['move_macs']
    assert len(rows) == len(gpu_check.DRY['shapes']) * 2 * 2
    pairs = {f"{a}/{b}" for a in kron_fast.KRON_PATHS for b in kron_fast.KRON_PATHS}
    for r in rows:
        assert set(r['ms']) == pairs and min(r['ms'].values()) > 0
        assert r['fastest'] == min(r['ms'], key=r['ms'].get) and r['pick'] in pairs
        assert r['pick_vs_fastest'] == pytest.approx(r['ms'][r['pick']] / r['ms'][r['fastest']])
    # the current constant's score is the geometric mean of the rows' own pick / fastest
    assert s['current'] == kron_fast.MOVE_MACS['cpu']
    geo = math.exp(statistics.fmean(math.log(r['pick_vs_fastest']) for r in rows))
    assert s['current_score'] == pytest.approx(geo)
    scores = {int(k): v for k, v in s['scores'].items()}
    assert sorted(scores) == sorted(gpu_check.MOVE_MACS_CANDIDATES)
    assert s['suggested_score'] == pytest.approx(min(scores.values()), abs=1e-3)


def test_bench_ran_both_dtypes(dry):
    out, res = dry
    for r, dt in zip(res['bench'], ('bf16', 'fp32')):
        assert r['dtype'] == dt and r['exit'] == 0 and r['tables'] == ['mlp', 'train', 'eval']
        with open(out / f'bench_{dt}.json') as f:
            written = json.load(f)
        assert written['args']['dtype'] == dt and len(written['mlp']) == len(gpu_check.DRY['shapes'])
        assert f"--dtype {dt}" in r['stdout'] and '| model |' in r['stdout']


def test_train_losses_from_the_logs(dry):
    out, res = dry
    t = res['train']
    iters = gpu_check.DRY['train']['max_iters']
    steps = {k: {int(i): v for i, v in d.items()} for k, d in t['step_losses'].items()}
    assert sorted(steps['eager']) == sorted(steps['compiled']) == list(range(iters))
    assert sorted(steps['resumed']) == list(range(iters // 2, iters))
    # on CPU the resumed run repeats the uninterrupted one exactly
    assert all(steps['resumed'][i] == steps['eager'][i] for i in steps['resumed'])
    diff = max(abs(steps['compiled'][i] / steps['eager'][i] - 1) for i in range(iters))
    assert t['compile_max_rel_diff'] == pytest.approx(diff) and diff <= gpu_check.COMPILE_TOL
    assert t['val_loss_last'] < 0.95 * t['val_loss_first']
    assert all(t['checks'].values()) and set(t['exits'].values()) == {0}
    log = (out / 'log.txt').read_text()
    assert log.count('torch.distributed.run --standalone --nproc_per_node=1 train.py') == 4
    assert '--compile=True' in log and '--init_from=resume' in log and '--dtype=bfloat16' in log


def test_ppl_of_export_and_checkpoint(dry):
    _, res = dry
    p = res['ppl']
    assert set(p['ppl']) == {'export_cpu', 'checkpoint_device'}
    # a random 50257-token model: perplexity near the vocabulary size
    assert 10_000 < p['ppl']['export_cpu'] < 200_000
    assert p['rel_diff_vs_cpu']['checkpoint_device'] == pytest.approx(
        abs(p['ppl']['checkpoint_device'] / p['ppl']['export_cpu'] - 1))
    assert p['rel_diff_vs_cpu']['checkpoint_device'] <= gpu_check.PPL_TOL


def test_a_failed_check_fails_the_run(tmp_path, monkeypatch):
    """tolerances of zero: every kron comparison fails, and so do the run and its exit status"""
    monkeypatch.setattr(gpu_check, 'TOL', {'fp32': (0.0, 0.0), 'bf16': (0.0, 0.0)})
    threads = torch.get_num_threads()
    try:
        status = gpu_check.main(['--device', 'cpu', '--checks', 'kron', '--out', str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert status == 1
    res = json.loads((tmp_path / 'results.json').read_text())
    assert res['status'] == {'kron': 'FAILED'} and not res['passed']
    assert not any(r['passed'] for r in res['kron'])
    assert 'FAILED' in (tmp_path / 'summary.md').read_text()


@pytest.mark.parametrize('argv,message', [
    (['--checks', 'kron,speed'], 'unknown checks'),
    (['--device', 'tpu'], 'not a torch device'),
])
def test_bad_arguments(argv, message):
    with pytest.raises(ValueError, match=message):
        gpu_check.parse_args(['--device', 'cpu', *argv] if '--device' not in argv else argv)
