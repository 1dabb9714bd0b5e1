"""sample.py: greedy decoding equals transformers' generate; seeds repeat; character models decode."""
import os
import pickle
import subprocess
import sys

import torch

from conftest import ROOT
from model import GPT, GPTConfig, save_checkpoint

SEP = '---------------\n'


def run(*args):
    return subprocess.run([sys.executable, 'sample.py', *args], cwd=ROOT, capture_output=True, text=True)


def test_greedy_matches_transformers(tiny_hf_dir, tmp_path):
    from transformers import GPT2LMHeadModel
    from gpt2_tokenizer import get_encoding
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


def test_seed_repeats_and_character_vocabulary(tmp_path):
    itos = dict(enumerate("\n !abcdefghijklmnopqrstuvwxyz"))
    meta = tmp_path / 'meta.pkl'
    with open(meta, 'wb') as f:
        pickle.dump({'vocab_size': len(itos), 'itos': itos, 'stoi': {c: i for i, c in itos.items()}}, f)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=len(itos), n_layer=1, n_head=2, n_embd=16))
    ckpt = str(tmp_path / 'c.pt')
    save_checkpoint({'model': model.state_dict(), 'model_args': vars(model.config).copy()}, ckpt)
    args = [ckpt, '--prompt=to be', '--num_samples=2', '--max_new_tokens=20', f'--meta={meta}']
    a, b, c = run(*args), run(*args), run(*args, '--seed=7')
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout != c.stdout
    samples = a.stdout.split(SEP)[:-1]
    assert len(samples) == 2 and all(s.startswith('to be') and len(s) == len('to be') + 20 + 1 for s in samples)
    bad = run(ckpt, '--prompt=TO BE', f'--meta={meta}')
    assert bad.returncode == 1 and bad.stderr.startswith("error: the prompt has characters outside")
