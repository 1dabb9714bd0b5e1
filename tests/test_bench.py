"""script/bench.py in --quick mode: its tables are well formed and their numbers agree with each other
and with independent counts (parameters counted from the factor shapes, kron_costs, checkpoint
bytes against 4 bytes per parameter). No timing is asserted: the benchmark is how speed is shown."""
import json
import os
import statistics
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from kron_fast import kron_costs
from model import GPT, GPTConfig

BENCH = os.path.join(ROOT, 'script', 'bench.py')
sys.path.insert(0, os.path.join(ROOT, 'script'))
import bench  # noqa: E402


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp('bench') / 'bench.json'
    r = subprocess.run([sys.executable, BENCH, '--quick', '--json', str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout, json.loads(out.read_text())


def median_ratio(num, den):
    """the per-round ratio the benchmark documents, computed here from the rounds it saved"""
    return statistics.median(a / b for a, b in zip(num, den))


def markdown_tables(text):
    """[(header cells, [row cells])] of every '| ... |' table in text."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith('|') and i + 1 < len(lines) and lines[i + 1].startswith('|---'):
            cells = lambda s: [c.strip() for c in s.strip().strip('|').split('|')]  # noqa: E731
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith('|'):
                    break
                rows.append(cells(row))
            tables.append((cells(line), rows))
    return tables


def test_prints_five_well_formed_tables(quick):
    text, res = quick
    assert 'glibc malloc defaults' in text.splitlines()[1]  # the allocator train.py runs with
    tables = markdown_tables(text)
    n_decode = len(bench.DECODE_SHAPES) * len(bench.DECODE_BATCHES)
    assert [len(rows) for _, rows in tables] == [len(bench.QUICK_SHAPES), 4, 3, 4, n_decode]
    for header, rows in tables:
        assert all(len(r) == len(header) for r in rows)
    assert [r[0] for r in tables[0][1]] == [s[0] for s in bench.QUICK_SHAPES]
    assert [r[0] for r in tables[1][1]] == ['dense', '81M', '81M rebuild', '96M']
    # what is printed is what the JSON holds
    for row, r in zip(tables[0][1], res['mlp']):
        assert row[2] == f"{r['params']:,}" and row[4] == r['path']
        assert float(row[8].rstrip('x')) == pytest.approx(r['factored_vs_dense'], abs=0.006)


def independent_params(d1, d2, f):
    """GPT parameters with the MLP matrices replaced by f pairs of factors (docs/reference.md's sum)."""
    c = bench.QUICK
    n, h = c['n_embd'], 4 * c['n_embd']
    dense = GPT(GPTConfig(**c)).num_params('paper')
    per_matrix = f * (d1 * d2 + (n // d1) * (h // d2))
    return dense - 2 * c['n_layer'] * n * h + 2 * c['n_layer'] * per_matrix


def test_mlp_table_counts_and_ratios(quick):
    _, res = quick
    N = res['args']['mlp_tokens']
    n, h = bench.QUICK['n_embd'], 4 * bench.QUICK['n_embd']
    for r, (label, d1, d2, f) in zip(res['mlp'], bench.QUICK_SHAPES):
        assert r['shape'] == label and r['cli'] == f"{d1} {d2} {f}"
        assert r['params'] == independent_params(d1, d2, f)
        fc = kron_costs(d1, d2, n // d1, h // d2, f, N)
        proj = kron_costs(d2, d1, h // d2, n // d1, f, N)
        best = min(fc['a_first'], fc['b_first']) + min(proj['a_first'], proj['b_first'])
        assert r['mac_ratio'] == pytest.approx(best / (2 * N * n * h))
        rounds = r['rounds_ms']
        assert len(rounds['dense']) == len(rounds['factored']) == res['args']['repeats']
        assert r['dense_ms'] == pytest.approx(statistics.median(rounds['dense']))
        assert r['factored_ms'] == pytest.approx(statistics.median(rounds['factored']))
        assert r['factored_vs_dense'] == pytest.approx(median_ratio(rounds['factored'], rounds['dense']))
        assert r['rebuild_vs_factored'] == pytest.approx(median_ratio(rounds['rebuild'], rounds['factored']))
        assert min(r['dense_ms'], r['rebuild_ms'], r['factored_ms']) > 0
    by_label = {r['shape']: r for r in res['mlp']}
    # the 81M structure (B of 1x4) costs a quarter of dense plus the small second product
    assert by_label['81M']['mac_ratio'] < 0.3
    # more factored multiply-adds than dense: the layer builds the dense weight instead
    assert by_label['92M-4']['mac_ratio'] > 1 and by_label['92M-4']['path'] == 'dense/dense'


def test_train_eval_memory_tables_consistent(quick):
    _, res = quick
    a = res['args']
    tokens = a['batch'] * a['seq']
    rows = {r['model']: r for r in res['train']}
    for r in res['train']:
        assert r['step_s'] == pytest.approx(statistics.median(r['rounds_s']))
        assert r['tokens_per_s'] == pytest.approx(tokens / r['step_s'])
        assert r['vs_dense'] == pytest.approx(median_ratio(rows['dense']['rounds_s'], r['rounds_s']))
    rebuild, factored = rows['81M rebuild']['rounds_s'], rows['81M']['rounds_s']
    assert rows['81M']['vs_rebuild'] == pytest.approx(median_ratio(rebuild, factored))
    assert rows['dense']['vs_rebuild'] is None and rows['81M rebuild']['vs_rebuild'] is None
    assert rows['81M']['params'] == rows['81M rebuild']['params'] == independent_params(48, 48, 1)
    assert rows['dense']['params'] == GPT(GPTConfig(**bench.QUICK)).num_params('paper')
    for r in res['eval']:
        assert r['eval_tokens_per_s'] > 0 and r['gen_tokens_per_s'] > 0
    assert res['eval'][0]['eval_vs_dense'] == pytest.approx(1.0)
    params = {r['model']: r['params'] for r in res['train']}
    for r in res['memory']:
        assert 0 < r['loaded_bytes'] <= r['eval_peak_bytes'] <= r['train_peak_bytes']
        # fp32 state dict, tied embedding stored once: 4 bytes a parameter plus the zip's bookkeeping
        assert 4 * params[r['model']] < r['checkpoint_bytes'] < 4 * params[r['model']] + 100_000
    mem = {r['model']: r for r in res['memory']}
    assert mem['81M']['checkpoint_bytes'] == mem['81M rebuild']['checkpoint_bytes']
    assert mem['81M']['checkpoint_vs_dense'] == pytest.approx(
        mem['81M']['checkpoint_bytes'] / mem['dense']['checkpoint_bytes'])


def test_decode_table_counts_and_ratios(quick):
    """bytes read per step from parameter counts made here (4 bytes each, the position table
    aside), the export sizes from krony_to_gpt.py's own directories, the ratios from the rounds"""
    _, res = quick
    a, rows = res['args'], res['decode']
    assert [(r['model'], r['batch']) for r in rows] == [(m, b) for b in bench.DECODE_BATCHES for m in bench.DECODE_SHAPES]
    c = bench.QUICK
    wpe = c['block_size'] * c['n_embd']
    dense = GPT(GPTConfig(**c)).num_params('paper') - wpe
    dims = {label: (d1, d2, f) for label, d1, d2, f in bench.QUICK_SHAPES}
    for r in rows:
        assert r['bytes_read_vs_dense'] == pytest.approx((independent_params(*dims[r['model']]) - wpe) / dense)
        assert r['vs_dense'] == pytest.approx(median_ratio(r['dense_rounds_s'], r['rounds_s']))
        assert r['tokens_per_s'] == pytest.approx(r['batch'] * a['decode_tokens'] / statistics.median(r['rounds_s']))
        assert len(r['rounds_s']) == a['repeats']
        assert r['disk_vs_dense'] == pytest.approx(r['disk_bytes'] / r['dense_disk_bytes'])
        # the weights (4 bytes a parameter, the embedding stored once) plus the code and config
        assert 4 * (independent_params(*dims[r['model']])) < r['disk_bytes'] < 4 * independent_params(*dims[r['model']]) + 80_000
    assert 4 * (dense + wpe) < rows[0]['dense_disk_bytes'] < 4 * (dense + wpe) + 20_000


def test_rebuild_baseline_computes_the_same_mlp():
    """the baseline must be the same function as the factored layer, or the comparison means nothing"""
    torch.manual_seed(0)
    cfg = GPTConfig(**bench.QUICK, mlp='kron', kron_dim1=16, kron_dim2=64, kron_factors=2, kron_scalers=True)
    mlp = bench.MLP(cfg)
    with torch.no_grad():
        mlp.c_fc.scale.uniform_(0.5, 2)
    x = torch.randn(5, 48)
    y = mlp(x)
    bench.set_rebuild(mlp, True)
    assert isinstance(mlp.c_fc, bench.RebuildKron)
    torch.testing.assert_close(mlp(x), y, rtol=1e-5, atol=1e-6)
    bench.set_rebuild(mlp, False)
    assert isinstance(mlp.c_fc, bench.KronLinear)


def test_bad_table_name_is_a_clean_error(tmp_path):
    out = tmp_path / 'b.json'
    r = subprocess.run([sys.executable, BENCH, '--quick', '--tables', 'mlp,speed', '--json', str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.startswith('error: unknown tables') and 'Traceback' not in r.stderr
    assert not out.exists()
