"""script/compare.py: its parameter matching and test slice against independent sources (model
parameter counts, the data file), and one reduced run of the benchmark end to end (the teacher and
InRank: train.py's rank growth, compress.py's stage 2, perplexity_eval.py), its parsed log checked
against train.py's checkpoints."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from checkpoint import load_checkpoint
from model import GPT, GPTConfig

sys.path.insert(0, os.path.join(ROOT, 'script'))
import compare  # noqa: E402


@pytest.mark.parametrize('n_embd', [32, 64, 768])
def test_matched_rank_has_the_parameters_of_the_81m_like_kronecker(n_embd):
    base = dict(block_size=8, vocab_size=10, n_layer=2, n_head=4, n_embd=n_embd)
    with torch.device('meta'):
        kron = GPT(GPTConfig(**base, mlp='kron', kron_dim1=n_embd, kron_dim2=n_embd)).num_params()
        rank = compare.matched_rank(n_embd, n_embd * n_embd + 4)
        low = GPT(GPTConfig(**base, mlp='lowrank', lowrank_rank=rank)).num_params()
    # within half a rank per matrix (4 matrices)
    assert abs(low - kron) <= 4 * 5 * n_embd / 2


def test_test_slice_is_whole_rows_of_the_test_split(tmp_path):
    path = tmp_path / 'slice.txt'
    compare.test_slice(5000, path)
    with open(os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.test.tokens'), encoding='utf-8') as f:
        rows = [r if r.strip() else '' for r in f]
    text = path.read_text(encoding='utf-8')
    n = next(n for n in range(1, len(rows)) if '\n\n'.join(rows[:n]) == text)
    assert sum(map(len, rows[:n])) >= 5000 > sum(map(len, rows[:n - 1]))


def test_quick_benchmark_runs_inrank_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, 'script/compare.py', '--quick', '--only', 'inrank', '--out', str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads((tmp_path / 'results.json').read_text())
    rows = {row['name']: row for row in res['rows']}
    assert set(rows) == {'teacher', 'teacher_at_budget', 'inrank'}
    assert '| InRank from scratch' in (tmp_path / 'results.md').read_text()
    s = compare.SETTINGS['quick']
    # the numbers parsed from train.py's log agree with its checkpoints
    best = load_checkpoint(str(tmp_path / 'teacher' / 'best.pt'))
    assert [e[0] for e in rows['teacher']['evals']] == [0, s['student_iters'], s['teacher_iters']]
    assert min(e[2] for e in rows['teacher']['evals']) == pytest.approx(best['best_val_loss'], abs=1e-4)
    assert rows['teacher']['params'] == GPT(GPTConfig(**best['model_args'])).num_params('paper')
    assert rows['inrank']['rank_changes']  # train.py logged the rank growth
    stage2 = load_checkpoint(str(tmp_path / 'inrank_stage2' / 'best.pt'))
    max_rank = s['n_embd'] // 2
    assert stage2['model_args']['lowrank_rank'] == rows['inrank']['rank']
    assert s['inrank_init_modes'] <= rows['inrank']['rank'] <= max_rank - s['inrank_buffer_modes']
    for row in rows.values():
        assert row['val_ppl_final'] == pytest.approx(math.exp(row['val_final']))
    # the teacher's mid-run row has no checkpoint of its own to evaluate
    assert rows['teacher_at_budget']['test_ppl'] is None
    assert all(math.isfinite(rows[n]['test_ppl']) for n in ('teacher', 'inrank'))
