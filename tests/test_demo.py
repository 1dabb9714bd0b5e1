"""script/demo.py --quick: the whole pipeline through the real scripts, in seconds."""
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
    rows = re.findall(r'^(teacher|student at init|student trained).*?\s([\d,]+)\s+([\d.]+)$', out.stdout, re.M)
    assert [r[0] for r in rows] == ['teacher', 'student at init', 'student trained']
    params = [int(r[1].replace(',', '')) for r in rows]
    ppl = [float(r[2]) for r in rows]
    # a few steps from a random init: every model is still close to uniform over GPT-2's 50,257 tokens
    assert all(2e4 < p < 1.2e5 for p in ppl), ppl
    # the Kronecker MLPs (A 32x32, B 1x4) are smaller than the dense ones (32x128) they replace
    assert params[1] == params[2] == params[0] - 2 * (32 * 128 - (32 * 32 + 4))
    with open(tmp_path / 'eval_2.json') as f:
        exported = json.load(f)
    assert exported['params_paper'] == params[0]  # the HF export is dense again
    for name in ('config.json', 'model.safetensors'):
        assert os.path.isfile(tmp_path / 'student_hf' / name)
