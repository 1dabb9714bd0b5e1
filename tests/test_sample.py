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


@pytest.mark.parametrize('kind', [dict(), dict(mlp='kron', kron_dim1=16, kron_dim2=32, kron_factors=2),
                                  dict(mlp='lowrank', lowrank_rank=4)])
def test_kv_cache_gives_the_same_tokens(kind):
    """GPT.generate with its KV cache against the full recomputation, greedy and sampled, past
    block_size too (where both run on the last block_size tokens)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=24, vocab_size=50, n_layer=2, n_head=2, n_embd=16, **kind)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    prompt = torch.randint(0, 50, (3, 5))
    for top_k, seed in ((1, 0), (None, 1), (10, 2)):
        runs = [model.generate(prompt, 40, 0.9, top_k, generator=torch.Generator().manual_seed(seed), use_cache=c)
                for c in (True, False)]
        assert torch.equal(*runs) and runs[0].shape == (3, 45)
    assert len(set(model.generate(prompt, 20, top_k=None)[0, 5:].tolist())) > 3  # not one token repeated


def test_cli_cache_and_no_cache_agree(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=50257, n_layer=2, n_head=2, n_embd=16,
                          mlp='kron', kron_dim1=16, kron_dim2=16, kron_factors=1)).eval()
    ckpt = str(tmp_path / 'k.pt')
    save_checkpoint({'model': model.state_dict(), 'model_args': vars(model.config).copy()}, ckpt)
    args = [ckpt, '--prompt=The history of', '--num_samples=2', '--max_new_tokens=30', '--seed=7']
    cached, full = run(*args), run(*args, '--no_cache')
    assert cached.returncode == 0 and full.returncode == 0, cached.stderr + full.stderr
    assert cached.stdout == full.stdout and cached.stdout.count(SEP) == 2
