"""Shared fixtures: tiny GPT-2-shaped models built here (no hub downloads)."""
import os
import pickle
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
torch.set_num_threads(min(2, torch.get_num_threads()))


def make_tiny_hf(path, n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=50257, seed=0):
    """A randomly initialised GPT2LMHeadModel saved with save_pretrained (real GPT-2 vocabulary)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions,
                     vocab_size=vocab_size)
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(path)
    return model


@pytest.fixture(scope='session')
def tiny_hf_dir(tmp_path_factory):
    """Directory of a tiny HF GPT-2 (2 layers, 64 wide, 128 positions, GPT-2 vocabulary)."""
    path = tmp_path_factory.mktemp('tiny_gpt2')
    make_tiny_hf(str(path))
    return str(path)


@pytest.fixture(scope='session')
def char_data(tmp_path_factory):
    """A 40k-character slice of tinyshakespeare as a character dataset (train.bin, val.bin, meta.pkl)."""
    path = tmp_path_factory.mktemp('chars')
    with open(os.path.join(ROOT, 'data', 'texts', 'tinyshakespeare', 'input.txt')) as f:
        text = f.read()[:40_000]
    chars = sorted(set(text))
    ids = np.array([chars.index(ch) for ch in text], dtype=np.uint16)
    ids[:36_000].tofile(path / 'train.bin')
    ids[36_000:].tofile(path / 'val.bin')
    with open(path / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': len(chars)}, f)
    return str(path)
