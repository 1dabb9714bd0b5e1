"""krony_to_gpt.py's exports in other environments than the project's own, each test run only when
an environment variable names that environment (they need a second virtual environment):

    KRONY_SECOND_PYTHON=/work/venv-tf4/bin/python pytest -q tests/test_hf_compat.py -k versions
    KRONY_LM_EVAL=/work/venv-lmeval/bin/lm_eval pytest -q tests/test_hf_compat.py -k lm_eval

The second python has another transformers (requirements.txt allows >= 4.40; the check was made
with 4.57 against the project's 5.x): folded and factored exports of a GPT-2-vocabulary and of a
character model load there and give the logits, greedy tokens and tokenizer ids of this one.
lm-evaluation-harness scores a local task offline on a factored export, with the log-likelihoods
this project computes for the same texts."""
import glob
import json
import math
import os
import subprocess
from dataclasses import asdict

import pytest
import torch

from checkpoint import save_checkpoint
from krony_to_gpt import export
from test_krony_to_gpt import ROOT, fresh_load, tiny
from tokenizer import CharTokenizer, GPT2BPE

SECOND_PYTHON = os.environ.get('KRONY_SECOND_PYTHON')
LM_EVAL = os.environ.get('KRONY_LM_EVAL')


@pytest.mark.skipif(not SECOND_PYTHON, reason='set KRONY_SECOND_PYTHON to a python with another transformers')
def test_exports_load_alike_in_two_transformers_versions(tmp_path):
    import sys
    with open(os.path.join(ROOT, 'data', 'texts', 'tinyshakespeare', 'input.txt'), encoding='utf-8') as f:
        chars = CharTokenizer.build(f.read(20_000), unk=True)
    cases = {'gpt2': (tiny('kron_scalers', vocab_size=50257, block_size=64), GPT2BPE(), "Kronecker, 40%."),
             'char': (tiny('kron', vocab_size=chars.vocab_size, block_size=64), chars, "To be, or not ∮ to be")}
    waits = {}
    for name, (model, tok, text) in cases.items():
        g = torch.Generator().manual_seed(2)
        V = model.config.vocab_size
        request = dict(tokens=torch.randint(0, V, (2, 64), generator=g).tolist(),
                       prompt=torch.randint(0, V, (1, 8), generator=g).tolist(), new_tokens=40, text=text)
        for factored in (False, True):
            out = tmp_path / f'{name}_{factored}'
            export(model, out, tok=tok, factored=factored)
            for py in (sys.executable, SECOND_PYTHON):
                waits[name, factored, py] = fresh_load(out, request, tmp_path / f'run_{name}_{factored}_{len(waits)}', py)
    results = {k: w() for k, w in waits.items()}
    for (name, factored, py), r in results.items():
        here = results[name, factored, sys.executable]
        print(f"{name:5} {'factored' if factored else 'folded  '} transformers {r['transformers']:8} "
              f"{r['model_class']:22} {r['tokenizer_class']:24} max |logits - this env's| "
              f"{(torch.tensor(r['logits']) - torch.tensor(here['logits'])).abs().max().item():.1e}")
        assert (torch.tensor(r['logits']) - torch.tensor(here['logits'])).abs().max() < 1e-5
        assert r['generated'] == here['generated'] and r['text_ids'] == here['text_ids']
        assert r['model_max_length'] == 64 and r['resaved_diff'] == 0
    versions = {r['transformers'].split('.')[0] for r in results.values()}
    assert len(versions) == 2, f"both pythons have transformers {versions}: point KRONY_SECOND_PYTHON at another major version"


@pytest.mark.skipif(not LM_EVAL, reason='set KRONY_LM_EVAL to an lm_eval executable (lm-evaluation-harness)')
def test_lm_eval_scores_a_factored_export_offline(tmp_path):
    """A loglikelihood task on local JSON lines: lm-eval's perplexity (exp of minus the mean
    log-likelihood of each target given its context) equals the one computed here with the model."""
    model = tiny('kron_scalers', vocab_size=50257, block_size=64)
    ckpt = tmp_path / 'k.pt'
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, ckpt)
    export(model, tmp_path / 'hf', tok=GPT2BPE(), factored=True)
    docs = [("The capital of France is", " Paris"), ("One plus one is", " two"),
            ("Kronecker products compress the", " MLP")]
    (tmp_path / 'data.jsonl').write_text(''.join(json.dumps(dict(context=c, target=t)) + '\n' for c, t in docs))
    (tmp_path / 'local_lastword.yaml').write_text(f"""task: local_lastword
dataset_path: json
dataset_kwargs:
  data_files:
    test: {tmp_path / 'data.jsonl'}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{context}}}}"
doc_to_target: "{{{{target}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
""")
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', HF_MODULES_CACHE=str(tmp_path / 'modules'))
    out = subprocess.run([LM_EVAL, '--model', 'hf', '--model_args', f"pretrained={tmp_path / 'hf'},trust_remote_code=True",
                          '--tasks', 'local_lastword', '--include_path', str(tmp_path), '--device', 'cpu',
                          '--batch_size', '1', '--output_path', str(tmp_path / 'results')],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = glob.glob(str(tmp_path / 'results' / '**' / 'results*.json'), recursive=True)
    ppl = json.loads(open(results).read())['results']['local_lastword']['perplexity,none']
    enc = GPT2BPE()
    lls = []
    with torch.no_grad():
        for context, target in docs:
            c, t = enc.encode(context), enc.encode(target)
            logp = torch.log_softmax(model(torch.tensor([c + t]))[0][0], -1)
            lls.append(sum(logp[len(c) - 1 + i, tok].item() for i, tok in enumerate(t)))
    print(f"lm-eval perplexity {ppl:.6g}, this project's {math.exp(-sum(lls) / len(lls)):.6g}")
    assert ppl == pytest.approx(math.exp(-sum(lls) / len(lls)), rel=1e-4)
