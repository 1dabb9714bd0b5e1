"""script/demo.py --quick: the whole pipeline through the real scripts on tiny sizes, in its own folder."""
import json
import os
import re
import subprocess
import sys

from conftest import ROOT


def test_quick_demo(tmp_path):
    out = subprocess.run([sys.executable, 'script/demo.py', '--quick', '--out_dir', str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = re.findall(r'^(teacher \(dense\)|student at init|student trained)\D*'
                      r'([\d,]+) +([\d,]+) +([\d.]+) +([\d.]+) +([\d,]+)$', out.stdout, re.M)
    assert [r[0] for r in rows] == ['teacher (dense)', 'student at init', 'student trained']
    params, mlp = ([int(r[i].replace(',', '')) for r in rows] for i in (1, 2))
    # the Kronecker MLPs (A 24x24, B 1x4 per matrix, two per layer, two layers) replace 24x96 matrices
    assert params[1] == params[2] == params[0] - 2 * 2 * (24 * 96 - (24 * 24 + 4))
    assert mlp[1] == mlp[2] == 2 * 2 * (24 * 24 + 4) and mlp[0] == 2 * 2 * 24 * 96
    evals = [json.loads((tmp_path / f'eval_{i}.json').read_text()) for i in range(3)]
    for r, e in zip(rows, evals):  # the table shows perplexity_eval.py's figures
        res = next(iter(e['results'].values()))
        assert f"{res['ppl']:.3f}" == r[3] and f"{res['bpb']:.4f}" == r[4]
        assert res['tokenizer'].startswith(('characters', 'TokenizersBackend'))
    assert evals[2]['params_paper'] == params[0]  # the HF export is dense again
    assert {'config.json', 'model.safetensors', 'tokenizer.json'} <= set(os.listdir(tmp_path / 'student_hf'))
    assert 'student / teacher:' in out.stdout and re.search(r'^    iter \d+ .* eta ', out.stdout, re.M)
    assert os.path.isfile(tmp_path / 'data' / 'meta.pkl')  # its own copy of the data, not the repository's
