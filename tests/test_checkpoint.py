"""checkpoint.py: checkpoints round-trip and rebuild from model_args; bad files and model names fail
with one line that says what to do."""
import os

import pytest
import torch

from checkpoint import load_checkpoint, load_model, save_checkpoint
from model import GPT, GPTConfig


def test_checkpoint_round_trip_rebuilds_from_model_args(tmp_path):
    from dataclasses import asdict
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=32, vocab_size=100, n_layer=2, n_head=2, n_embd=16, mlp='kron',
                    kron_dim1=4, kron_dim2=8, kron_factors=2, kron_scalers=True)
    model = GPT(cfg).eval()
    path = tmp_path / 'k.pt'
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(cfg)}, path)
    assert os.listdir(tmp_path) == ['k.pt']  # no temporary file left behind
    loaded, ckpt = load_model(str(path))
    assert loaded.config == cfg
    idx = torch.randint(0, 100, (1, 20))
    torch.testing.assert_close(loaded.eval()(idx)[0], model(idx)[0])


def test_bad_checkpoints_are_named_in_the_error(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        load_checkpoint(str(tmp_path / 'missing.pt'))
    junk = tmp_path / 'junk.pt'
    junk.write_text('not a checkpoint')
    with pytest.raises(ValueError, match='junk.pt is not a readable torch file'):
        load_checkpoint(str(junk))
    other = tmp_path / 'other.pt'
    torch.save({'weights': 1}, other)
    with pytest.raises(ValueError, match='other.pt is not a GPT checkpoint'):
        load_checkpoint(str(other))


