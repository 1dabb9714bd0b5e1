"""sample.py: greedy decoding equals transformers' generate; seeds repeat; character models decode."""
import pickle
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from checkpoint import save_checkpoint
from model import GPT, GPTConfig
import sample

SEP = '---------------\n'


def run(*args):
    return subprocess.run([sys.executable, 'sample.py', *args], cwd=ROOT, capture_output=True, text=True)


def test_greedy_matches_transformers(tiny_hf_dir, tmp_path):
    from transformers import GPT2LMHeadModel
    from tokenizer import get_encoding
    prompt = "The history of the city"
    (tmp_path / 'prompt.txt').write_text(prompt)
    out = run(tiny_hf_dir, f'--prompt=FILE:{tmp_path / "prompt.txt"}', '--num_samples=1', '--max_new_tokens=8',
              '--top_k=1')
    assert out.returncode == 0, out.stderr
    enc = get_encoding()
    hf = GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    ids = torch.tensor([enc.encode(prompt)])
    want = hf.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)[0].tolist()
    assert out.stdout == enc.decode(want) + '\n' + SEP


def test_character_model_and_seeds(tmp_path):
    itos = dict(enumerate("\n !abcdefghijklmnopqrstuvwxyz"))
    meta = tmp_path / 'meta.pkl'
    with open(meta, 'wb') as f:
        pickle.dump({'vocab_size': len(itos), 'itos': itos, 'stoi': {c: i for i, c in itos.items()}}, f)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=len(itos), n_layer=1, n_head=2, n_embd=16)).eval()
    ckpt = str(tmp_path / 'c.pt')
    save_checkpoint({'model': model.state_dict(), 'model_args': vars(model.config).copy()}, ckpt)
    out = run(ckpt, '--prompt=to be', '--num_samples=2', '--max_new_tokens=20', f'--meta={meta}', '--seed=3')
    assert out.returncode == 0, out.stderr
    tok = sample.read_meta_tokenizer(str(meta))
    want = sample.generate(model, tok.encode('to be'), 2, 20, 0.8, 200, 3, 'cpu')
    assert out.stdout == ''.join(tok.decode(ids) + '\n' + SEP for ids in want)
    assert want != sample.generate(model, tok.encode('to be'), 2, 20, 0.8, 200, 4, 'cpu')
    assert all(len(ids) == 5 + 20 for ids in want)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        tok.encode('TO BE')
