"""compress.py: low-rank SVD init, InRank's stage-2 truncation and layer truncation, against
numpy's SVD and HF GPT2LMHeadModel; its command line and its errors."""
import os
from dataclasses import asdict
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

import compress
import inrank
from conftest import ROOT, make_tiny_hf
from checkpoint import load_checkpoint, load_model, model_from_checkpoint, save_checkpoint
from model import GPT, GPTConfig


def run(*args):
    return subprocess.run([sys.executable, 'compress.py', *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    """A dense project checkpoint (2 layers, 32 wide): the CLI tests load it without transformers."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32))
    path = str(tmp_path_factory.mktemp('compress') / 'dense.pt')
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, path)
    return path


def test_svd_factors_are_the_eckart_young_optimum():
    W = torch.randn(24, 40, generator=torch.Generator().manual_seed(0))
    s = np.linalg.svd(W.numpy().astype(np.float64), compute_uv=False)
    for r in (1, 5, 24):
        U, V = compress.svd_factors(W, r)
        assert U.shape == (24, r) and V.shape == (r, 40)
        err = (W.double() - U @ V).norm().item()
        assert err == pytest.approx(np.sqrt((s[r:] ** 2).sum()), abs=1e-9)
        # both factors carry sqrt(sigma): balanced norms
        torch.testing.assert_close(U.norm(dim=0), V.norm(dim=1))


def test_lowrank_model_from_hf_matrices_and_full_rank_logits(tiny_hf_dir):
    hf = GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    dense = GPT.from_pretrained(tiny_hf_dir).eval()
    low, errors = compress.lowrank_model(dense, 10)
    hf_fc = hf.transformer.h[1].mlp.c_fc.weight.detach().double().numpy()  # Conv1D: (in, out)
    u, s, vt = np.linalg.svd(hf_fc, full_matrices=False)
    expected = (u[:, :10] * s[:10]) @ vt[:10]
    got = low.transformer.h[1].mlp.c_fc.dense_weight().detach().double().numpy()
    assert np.abs(got - expected).max() < 1e-5
    assert dict(errors)['transformer.h.1.mlp.c_fc'] == pytest.approx(
        np.sqrt((s[10:] ** 2).sum() / (s ** 2).sum()), abs=1e-6)
    # at rank min(in, out) nothing is lost: the logits are HF's
    full, _ = compress.lowrank_model(dense, 64)
    idx = torch.randint(0, 50257, (2, 19))
    with torch.no_grad():
        torch.testing.assert_close(full.eval()(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)
    assert low.num_params() == dense.num_params() - 4 * (64 * 256) + 4 * 10 * (64 + 256)


@pytest.mark.parametrize('n_layer,expected', [(12, [0, 2, 4, 7, 9, 11]), (4, [0, 3]), (6, [0, 3, 5]), (1, [0])])
def test_default_layers_are_distilgpt2s_for_12(n_layer, expected):
    assert compress.default_layers(n_layer) == expected


def test_truncated_model_equals_hf_with_those_layers(tmp_path):
    hf = make_tiny_hf(str(tmp_path / 'hf4'), n_layer=4)
    model = GPT.from_pretrained(str(tmp_path / 'hf4'))
    small = compress.truncate_model(model, [0, 3]).eval()
    assert small.config.n_layer == 2
    hf.transformer.h = torch.nn.ModuleList([hf.transformer.h[0], hf.transformer.h[3]])
    hf.config.n_layer = 2
    idx = torch.randint(0, 50257, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(small(idx)[0], hf.eval()(idx, use_cache=False).logits, rtol=0, atol=1e-4)
    assert torch.equal(small.transformer.h[1].attn.c_attn.weight, model.transformer.h[3].attn.c_attn.weight)


def test_cli_lowrank_and_truncate_write_loadable_checkpoints(tiny_ckpt, tmp_path):
    out = tmp_path / 'lr.pt'
    r = run('lowrank', '8', '--from', tiny_ckpt, '--out', str(out))
    assert r.returncode == 0, r.stderr
    model, ckpt = load_model(str(out))
    assert ckpt['model_args']['mlp'] == 'lowrank' and ckpt['model_args']['lowrank_rank'] == 8
    assert [lin.rank for _, lin in model.mlp_linears()] == [8] * 4
    out2 = tmp_path / 'tr.pt'
    r = run('truncate', '--layers', '1', '--from', str(out), '--out', str(out2))
    assert r.returncode == 0, r.stderr
    small, ckpt2 = load_model(str(out2))
    assert ckpt2['compress']['layers'] == [1] and small.config.n_layer == 1
    assert torch.equal(small.transformer.h[0].mlp.c_fc.U, model.transformer.h[1].mlp.c_fc.U)


def test_stage2_truncates_each_matrix_to_the_largest_rank_found(tmp_path):
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, mlp='lowrank')
    stage1 = GPT(cfg)  # max rank 16
    inrank.start(stage1, 2, 4)
    stage1.transformer.h[1].mlp.c_fc.set_active_rank(9)  # 5 found + 4 buffer
    path = tmp_path / 'stage1.pt'
    save_checkpoint({'model': stage1.state_dict(), 'model_args': asdict(cfg),
                     'config': {'inrank_buffer_modes': 4}}, str(path))
    out = tmp_path / 'stage2.pt'
    r = run('lowrank', 'found', '--from', str(path), '--out', str(out))
    assert r.returncode == 0, r.stderr
    stage2 = model_from_checkpoint(load_checkpoint(str(out)))
    assert stage2.config.lowrank_rank == 5 and stage2.transformer.h[0].mlp.c_fc.U.shape == (32, 5)
    W = stage1.transformer.h[1].mlp.c_fc.dense_weight().detach().double().numpy()
    u, s, vt = np.linalg.svd(W, full_matrices=False)
    got = stage2.transformer.h[1].mlp.c_fc.dense_weight().detach().double().numpy()
    assert np.abs(got - (u[:, :5] * s[:5]) @ vt[:5]).max() < 1e-5
    # a checkpoint without the buffer in its config needs --buffer
    save_checkpoint({'model': stage1.state_dict(), 'model_args': asdict(cfg)}, str(path))
    r = run('lowrank', 'found', '--from', str(path), '--out', str(tmp_path / 'x.pt'))
    assert r.returncode == 1 and '--buffer' in r.stderr and not (tmp_path / 'x.pt').exists()


@pytest.mark.parametrize('args,message', [
    (['lowrank', 'abc'], "positive integer or 'found'"),
    (['lowrank', '33'], 'between 1 and'),
    (['truncate', '--layers', '0,2'], 'distinct indices between 0 and 1'),
    (['truncate', '--layers', 'a,b'], 'comma-separated'),
])
def test_cli_errors_leave_no_output(tiny_ckpt, tmp_path, args, message):
    out = tmp_path / 'out.pt'
    r = run(*args, '--from', tiny_ckpt, '--out', str(out))
    assert r.returncode == 1 and message in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not out.exists()


def test_cli_missing_source_is_named(tmp_path):
    r = run('truncate', '--from', str(tmp_path / 'nope.pt'), '--out', str(tmp_path / 'out.pt'))
    assert r.returncode == 1 and 'nope.pt' in r.stderr and 'Traceback' not in r.stderr
    assert not os.path.exists(tmp_path / 'out.pt')


def test_lowrank_and_truncated_students_export_to_hf_exactly(tiny_hf_dir):
    from krony_to_gpt import to_hf
    dense = GPT.from_pretrained(tiny_hf_dir)
    low, _ = compress.lowrank_model(dense, 7)
    low.transformer.h[0].mlp.c_fc.set_active_rank(5)  # an InRank-style partial rank exports as used
    for student in (low.eval(), compress.truncate_model(low, [1]).eval()):
        hf = to_hf(student)
        lin = student.transformer.h[0].mlp.c_fc
        U, V = lin.factors()
        torch.testing.assert_close(hf.transformer.h[0].mlp.c_fc.weight, U @ V, rtol=0, atol=1e-6)
        idx = torch.randint(0, 50257, (2, 15))
        with torch.no_grad():
            torch.testing.assert_close(hf(idx, use_cache=False).logits, student(idx)[0], rtol=0, atol=1e-4)


def stage1_checkpoint(path):
    """A low-rank model with InRank's ranks (found 2 in every matrix but one, 5 there; buffer 4)
    after three AdamW steps, saved as train.py saves a run: (model, the optimizer's index -> name)."""
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, mlp='lowrank', lowrank_init='inrank')
    model = GPT(cfg)  # max rank 16
    inrank.start(model, 2, 4)
    model.transformer.h[1].mlp.c_fc.set_active_rank(9)
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95))
    idx = torch.randint(0, 50, (4, 16))
    for _ in range(3):
        model(idx, idx)[1].backward()
        opt.step()
        opt.zero_grad()
    names = {id(p): n for n, p in model.named_parameters()}
    name_of = dict(enumerate(names[id(p)] for g in opt.param_groups for p in g['params']))
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(cfg), 'optimizer': opt.state_dict(),
                     'scaler': torch.amp.GradScaler('cpu', enabled=False).state_dict(), 'iter_num': 3,
                     'best_val_loss': 3.5, 'rng': [torch.get_rng_state()], 'data_rng': torch.Generator().get_state(),
                     'config': {'inrank_buffer_modes': 4}}, str(path))
    return model, name_of


def test_stage2_resume_slices_the_adam_moments_as_inrank_does(tmp_path):
    stage1, name_of = stage1_checkpoint(tmp_path / 'stage1.pt')
    before = torch.load(tmp_path / 'stage1.pt', weights_only=False)['optimizer']['state']
    r = run('lowrank', 'found', '--from', str(tmp_path / 'stage1.pt'), '--resume_dir', str(tmp_path / 'stage2'))
    assert r.returncode == 0, r.stderr
    ckpt = torch.load(tmp_path / 'stage2' / 'ckpt.pt', weights_only=False)
    k = ckpt['model_args']['lowrank_rank']
    assert k == 5 and ckpt['iter_num'] == 3 and ckpt['best_val_loss'] == float('inf')
    after = ckpt['optimizer']['state']
    for i, name in name_of.items():
        for m in ('exp_avg', 'exp_avg_sq'):
            old, new = before[i][m], after[i][m]
            if name.endswith('.U'):  # InRank's A = U^T (R, in) becomes (k, in): moments [:k, :in]
                A = old.t()
                torch.testing.assert_close(new, A[:k, :A.shape[1]].t(), rtol=0, atol=0)
            elif name.endswith('.V'):  # its B = V^T (out, R) becomes (out, k): moments [:out, :k]
                B = old.t()
                torch.testing.assert_close(new, B[:B.shape[0], :k].t(), rtol=0, atol=0)
            else:
                assert torch.equal(new, old), name
        assert torch.equal(after[i]['step'], before[i]['step'])
    # the new model's parameters are the SVD factors, and train.py's optimizer takes the state
    model = model_from_checkpoint(ckpt)
    W = stage1.transformer.h[1].mlp.c_fc.dense_weight().detach().double().numpy()
    u, s, vt = np.linalg.svd(W, full_matrices=False)
    assert np.abs(model.transformer.h[1].mlp.c_fc.dense_weight().detach().double().numpy()
                  - (u[:, :k] * s[:k]) @ vt[:k]).max() < 1e-5
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95))
    opt.load_state_dict(ckpt['optimizer'])
    idx = torch.randint(0, 50, (4, 16))
    model(idx, idx)[1].backward()
    opt.step()


@pytest.mark.parametrize('args,message', [
    (['lowrank', 'found', '--out', 'x.pt'], "replaces --out"),
    (['lowrank', '8'], "goes with 'lowrank found'"),
])
def test_resume_dir_errors(tmp_path, args, message):
    stage1_checkpoint(tmp_path / 'stage1.pt')
    r = run(*args, '--from', str(tmp_path / 'stage1.pt'), '--resume_dir', str(tmp_path / 'stage2'))
    assert r.returncode == 1 and message in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path / 'stage2').exists()


def test_resume_dir_needs_a_training_state(tmp_path):
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=32, mlp='lowrank')
    model = GPT(cfg)
    inrank.start(model, 2, 4)
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(cfg), 'config': {'inrank_buffer_modes': 4}},
                    str(tmp_path / 'model_only.pt'))
    r = run('lowrank', 'found', '--from', str(tmp_path / 'model_only.pt'), '--resume_dir', str(tmp_path / 'stage2'))
    assert r.returncode == 1 and 'training state' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path / 'stage2').exists()
