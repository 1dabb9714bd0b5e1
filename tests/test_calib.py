"""calib.py against independent computations: Van Loan when C = I, a generic optimiser (L-BFGS
from several random starts) when C is a Kronecker product, autograd's gradient of the objective
built with torch.kron, the weighted low-rank optimum from a QR of X, and a forward pass spelled
out by hand for the Gram matrices; then the --calib command lines of kron_decompose.py and
compress.py end to end."""
import os
import pickle
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calib import (HELD_EVERY, KronObjective, act_err, aware_kron, aware_lowrank, calib_ids, calib_windows,
                   damped, kron_als, kron_closed_form, mlp_grams)
from checkpoint import load_model, save_checkpoint
from conftest import ROOT
from factored import GELU_APPROXIMATE, kron_reference as kron_ref
from kron_decompose import nearest_kron
from model import GPT, GPTConfig


def objective(W, A, B, C):
    """tr((W - W_hat)^T C (W - W_hat)) with W_hat from torch.kron (differentiable)."""
    D = W - kron_ref(A, B)
    return (D * (C @ D)).sum()


def random_spd(n, gen, cond=30.0):
    Q = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))[0]
    return (Q * torch.logspace(0, np.log10(cond), n, dtype=torch.float64)) @ Q.T


def correlated_X(rows, cols, gen):
    """Activations with a spread spectrum and a mean, like an MLP's inputs."""
    X = torch.randn(rows, cols, generator=gen, dtype=torch.float64) @ torch.randn(cols, cols, generator=gen,
                                                                                  dtype=torch.float64)
    return X + 2.0 * torch.randn(cols, generator=gen, dtype=torch.float64)


SHAPES = [((3, 4), (2, 3)), ((4, 2), (3, 5)), ((6, 5), (1, 4)), ((2, 6), (4, 1))]


# ---------------------------------------------------------------- the Kronecker fit

def random_W(a_shape, b_shape, n_factors, gen):
    (m1, n1), (m2, n2) = a_shape, b_shape
    assert n_factors <= min(m1 * n1, m2 * n2)  # every shape in SHAPES has room for the factors asked
    return torch.randn(m1 * m2, n1 * n2, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize('a_shape,b_shape', SHAPES)
@pytest.mark.parametrize('n_factors', [1, 2])
def test_equals_van_loan_when_C_is_the_identity(a_shape, b_shape, n_factors):
    gen = torch.Generator().manual_seed(0)
    (m1, _), (m2, _) = a_shape, b_shape
    W = random_W(a_shape, b_shape, n_factors, gen)
    A0, B0, _ = nearest_kron(W, a_shape, n_factors)
    for scale in (1.0, 7.3):  # any multiple of I whitens to the same problem
        C = scale * torch.eye(m1 * m2, dtype=torch.float64)
        A, B = kron_closed_form(W, a_shape, n_factors, C)
        assert (kron_ref(A, B) - kron_ref(A0, B0)).abs().max() < 1e-6 * W.abs().max()
        A, B, info = aware_kron(W, a_shape, n_factors, C)
        assert (kron_ref(A, B) - kron_ref(A0, B0)).abs().max() < 1e-6 * W.abs().max()


def lbfgs_best(W, C, a_shape, b_shape, n_factors, starts=3):
    """The lowest objective L-BFGS reaches from several random starts."""
    best = float('inf')
    for seed in range(starts):
        g = torch.Generator().manual_seed(100 + seed)
        A = torch.randn(n_factors, *a_shape, generator=g, dtype=torch.float64).requires_grad_()
        B = torch.randn(n_factors, *b_shape, generator=g, dtype=torch.float64).requires_grad_()
        opt = torch.optim.LBFGS([A, B], lr=1, max_iter=400, tolerance_grad=1e-14, tolerance_change=1e-16,
                                history_size=50, line_search_fn='strong_wolfe')

        def closure():
            opt.zero_grad()
            f = objective(W, A, B, C)
            f.backward()
            return f
        opt.step(closure)
        best = min(best, objective(W, A, B, C).item())
    return best


@pytest.mark.parametrize('a_shape,b_shape', SHAPES[:2])
def test_closed_form_is_the_optimum_for_a_kronecker_C(a_shape, b_shape):
    gen = torch.Generator().manual_seed(1)
    (m1, n1), (m2, n2) = a_shape, b_shape
    W = torch.randn(m1 * m2, n1 * n2, generator=gen, dtype=torch.float64)
    C = torch.kron(random_spd(m1, gen), random_spd(m2, gen))
    for n_factors in (1, 2):
        A, B = kron_closed_form(W, a_shape, n_factors, C)
        f = objective(W, A, B, C).item()
        best = lbfgs_best(W, C, a_shape, b_shape, n_factors)
        assert f <= best * (1 + 1e-9)          # no start of the optimiser does better
        assert best <= f * (1 + 1e-6)          # and the optimiser does find it: it is the optimum
        # ALS from the closed form has nothing left to gain
        _, _, history = kron_als(W, A, B, C, sweeps=5)
        assert history[-1] >= history[0] * (1 - 1e-9)
        # and it beats plain Van Loan on this objective (C is far from a multiple of I)
        A0, B0, _ = nearest_kron(W, a_shape, n_factors)
        assert f < objective(W, A0, B0, C).item()


def test_objective_without_the_dense_matrix():
    gen = torch.Generator().manual_seed(2)
    W = torch.randn(12, 15, generator=gen, dtype=torch.float64)
    C = random_spd(12, gen)
    A, B = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64), torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    assert abs(KronObjective(W, C, (3, 5))(A, B).item() - objective(W, A, B, C).item()) < 1e-9 * objective(W, A, B, C).item()


@pytest.mark.parametrize('a_shape,b_shape', SHAPES)
@pytest.mark.parametrize('n_factors', [1, 2])
def test_als_never_increases_and_ends_stationary(a_shape, b_shape, n_factors):
    gen = torch.Generator().manual_seed(3)
    (m1, _), (m2, _) = a_shape, b_shape
    W = random_W(a_shape, b_shape, n_factors, gen)
    X = correlated_X(60, m1 * m2, gen)
    C = X.T @ X  # no Kronecker structure
    A = torch.randn(n_factors, *a_shape, generator=gen, dtype=torch.float64)
    B = torch.randn(n_factors, *b_shape, generator=gen, dtype=torch.float64)
    A, B, history = kron_als(W, A, B, C, sweeps=1000, tol=1e-15)
    h = np.array(history)
    assert (np.diff(h) <= 1e-12 * h[0]).all()       # every sweep: no increase
    assert h[-1] < 0.9 * h[0]
    A, B = A.clone().requires_grad_(), B.clone().requires_grad_()
    f = objective(W, A, B, C)
    gA, gB = torch.autograd.grad(f, (A, B))
    # the gradient vanishes relative to its scale (f's gradient at a random point of the same size)
    scale = (2 * C.norm() * W.norm() * max(A.norm(), B.norm())).item()
    assert max(gA.norm().item(), gB.norm().item()) < 1e-6 * scale
    assert abs(f.item() - history[-1]) < 1e-9 * h[0]  # the balanced factors are the same products


def test_aware_fit_beats_van_loan_on_held_out_activations():
    """activations with a structure the weights do not show: fitted on one half, measured on the other"""
    gen = torch.Generator().manual_seed(4)
    W = torch.randn(24, 20, generator=gen, dtype=torch.float64)
    X = correlated_X(400, 24, gen)
    C_fit, C_held = X[:300].T @ X[:300], X[300:].T @ X[300:]
    A, B, info = aware_kron(W, (4, 5), 1, damped(C_fit))
    A0, B0, _ = nearest_kron(W, (4, 5), 1)
    assert act_err(W, kron_ref(A, B), C_held) < act_err(W, kron_ref(A0, B0), C_held)
    assert info['refined'] <= info['closed_form'] + 1e-12
    # act_err is ||X (W - W_hat)|| / ||X W|| computed from X itself
    D = W - kron_ref(A, B)
    assert abs(act_err(W, kron_ref(A, B), C_held) - ((X[300:] @ D).norm() / (X[300:] @ W).norm()).item()) < 1e-12


# ---------------------------------------------------------------- low rank

@pytest.mark.parametrize('rank', [1, 3, 8])
def test_aware_lowrank_is_the_weighted_optimum_from_a_qr_of_X(rank):
    gen = torch.Generator().manual_seed(5)
    W = torch.randn(16, 10, generator=gen, dtype=torch.float64)
    X = correlated_X(80, 16, gen)
    U, V = aware_lowrank(W, rank, X.T @ X)
    # the same optimum another way: X = Q R, so ||X (W - M)|| = ||R W - R M||, Eckart-Young on R W
    R = torch.linalg.qr(X)[1]
    P, S, Qh = torch.linalg.svd(R @ W)
    M = torch.linalg.solve_triangular(R, (P[:, :rank] * S[:rank]) @ Qh[:rank], upper=True)
    assert (U @ V - M).abs().max() < 1e-8 * W.abs().max()
    err = (X @ (W - U @ V)).norm().item()
    assert abs(err - S[rank:].square().sum().sqrt().item()) < 1e-9 * S[0].item()
    # and the plain SVD does worse on these activations
    from compress import svd_factors
    U0, V0 = svd_factors(W, rank)
    assert err < (X @ (W - U0 @ V0)).norm().item()
    # with damping: the optimum for X stacked over sqrt(lambda) I
    lam = 0.01 * (X.T @ X).diagonal().mean()
    Ud, Vd = aware_lowrank(W, rank, damped(X.T @ X))
    Rd = torch.linalg.qr(torch.cat([X, lam.sqrt() * torch.eye(16, dtype=torch.float64)]))[1]
    P, S, Qh = torch.linalg.svd(Rd @ W)
    Md = torch.linalg.solve_triangular(Rd, (P[:, :rank] * S[:rank]) @ Qh[:rank], upper=True)
    assert (Ud @ Vd - Md).abs().max() < 1e-8 * W.abs().max()


# ---------------------------------------------------------------- calibration activations

def tiny_char_model(seed=0, vocab=65):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=vocab))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()


def manual_inputs(model, idx):
    """Each MLP matrix's input by a forward spelled out block by block (no hooks)."""
    out = {}
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.shape[1]))
    for i, block in enumerate(model.transformer.h):
        x = x + block.attn(block.ln_1(x))
        a = block.ln_2(x)
        h = F.gelu(a @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias, approximate=GELU_APPROXIMATE)
        out[f'transformer.h.{i}.mlp.c_fc'] = a.reshape(-1, a.shape[-1]).double()
        out[f'transformer.h.{i}.mlp.c_proj'] = h.reshape(-1, h.shape[-1]).double()
        x = x + block.mlp(a)
    return out


def test_grams_are_X_transpose_X_of_each_matrix_input():
    model = tiny_char_model()
    ids = torch.randint(0, 65, (2000,), generator=torch.Generator().manual_seed(0))
    fit, held = calib_windows(ids, 320, model.config.block_size)
    assert fit.shape == (8, 32) and held.shape == (2, 32)
    grams = mlp_grams(model, ids, 320, batch_size=3)
    with torch.no_grad():
        ref_fit, ref_held = manual_inputs(model, fit), manual_inputs(model, held)
    assert len(grams) == 4
    for name, g in grams.items():
        assert g['fit'].dtype == torch.float64 and g['fit_tokens'] == 256 and g['held_tokens'] == 64
        for C, X in ((g['fit'], ref_fit[name]), (g['held'], ref_held[name])):
            assert torch.allclose(C, X.T @ X, rtol=1e-5, atol=1e-5 * C.abs().max().item())
    # windows are spread over the text, none overlapping here, one in HELD_EVERY held out
    starts = [int(torch.nonzero((ids.unfold(0, 32, 1) == s).all(1))[0]) for s in torch.cat([fit, held])]
    assert len(set(starts)) == 10 and max(starts) > 1900
    assert held.shape[0] * HELD_EVERY == fit.shape[0] + held.shape[0]


def test_calib_ids_read_training_text_only(tmp_path, char_data):
    model = tiny_char_model()
    train = np.fromfile(os.path.join(char_data, 'train.bin'), dtype=np.uint16)
    assert torch.equal(calib_ids(char_data, model), torch.from_numpy(train.astype(np.int64)))
    assert torch.equal(calib_ids(os.path.join(char_data, 'train.bin'), model), torch.from_numpy(train.astype(np.int64)))
    with pytest.raises(ValueError, match='never validation'):
        calib_ids(os.path.join(char_data, 'val.bin'), model)
    with pytest.raises(ValueError, match='does not exist'):
        calib_ids(str(tmp_path / 'nothing'), model)
    with pytest.raises(ValueError, match='train.bin'):
        calib_ids(str(tmp_path), model)
    with pytest.raises(ValueError, match='outside the model'):
        calib_ids(char_data, tiny_char_model(vocab=20))
    # a text file goes through the checkpoint's character vocabulary
    text = tmp_path / 'train.txt'
    text.write_text('to be or not')
    from tokenizer import CharTokenizer
    chars = CharTokenizer.build('abenort ')
    ids = calib_ids(str(text), model, {'vocab': chars.to_meta()})
    assert ids.tolist() == [chars.stoi[ch] for ch in 'to be or not']
    with pytest.raises(ValueError, match='fewer than --calib_tokens'):
        calib_windows(ids, 320, 32)


# ---------------------------------------------------------------- the command lines

def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope='module')
def char_teacher(tmp_path_factory, char_data):
    """A dense checkpoint on char_data's vocabulary: 2 layers, 32 wide (hidden 128)."""
    with open(os.path.join(char_data, 'meta.pkl'), 'rb') as f:
        vocab = pickle.load(f)['vocab_size']
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=vocab))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    path = str(tmp_path_factory.mktemp('calib') / 'dense.pt')
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, path)
    return path


def test_cli_kron_calib_and_permute_end_to_end(char_teacher, char_data, tmp_path):
    out = tmp_path / 'k.pt'
    r = run('kron_decompose.py', '8', '32', '2', '--from', char_teacher, '--calib', char_data, '--calib_tokens', '640',
            '--permute', '--no-normalize', '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert 'total' in r.stdout and 'held-out' in r.stdout and '--permute' in r.stdout
    kron, ckpt = load_model(str(out))
    dense, _ = load_model(char_teacher)
    info = ckpt['decompose']
    assert info['calib']['fit_tokens'] == 512 and info['calib']['held_tokens'] == 128
    # the errors it reports are the stored matrices' errors on the held-out tokens of the reordered model
    from reorder import permute_hidden, permute_grams
    grams = mlp_grams(dense, calib_ids(char_data, dense), 640)
    permuted = permute_hidden(dense, info['orders'])
    grams = permute_grams(grams, info['orders'])
    for (name, d), (_, k), s in zip(permuted.mlp_linears(), kron.mlp_linears(), info['stats']):
        W = d.dense_weight().detach().double()
        assert abs(act_err(W, k.dense_weight().detach().double(), grams[name]['held']) - s['act_err_final']) < 1e-5
        assert s['act_err'] == pytest.approx(s['act_err_final'])  # --no-normalize: stored = fit
        assert torch.equal(k.bias, d.bias)  # biases follow the order
    # the fit is the one calib computes for the reordered model
    k0 = kron.transformer.h[0].mlp.c_fc
    W0 = permuted.transformer.h[0].mlp.c_fc.dense_weight().detach()
    A, B, _ = aware_kron(W0, (8, 32), 2, damped(grams['transformer.h.0.mlp.c_fc']['fit']))
    assert torch.allclose(k0.dense_weight().double(), kron_ref(A, B), atol=1e-5)


def test_cli_lowrank_calib_end_to_end(char_teacher, char_data, tmp_path):
    out = tmp_path / 'lr.pt'
    r = run('compress.py', 'lowrank', '6', '--from', char_teacher, '--calib', char_data, '--calib_tokens', '640',
            '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert 'total' in r.stdout and 'held-out' in r.stdout
    model, ckpt = load_model(str(out))
    dense, _ = load_model(char_teacher)
    grams = mlp_grams(dense, calib_ids(char_data, dense), 640)
    rows = ckpt['compress']['calib_errors']
    for (name, d), (_, lin), row in zip(dense.mlp_linears(), model.mlp_linears(), rows):
        W = d.dense_weight().detach().double()
        U, V = aware_lowrank(W, 6, damped(grams[name]['fit']))
        assert torch.allclose(lin.dense_weight().double(), U @ V, atol=1e-5)
        assert abs(act_err(W, U @ V, grams[name]['held']) - row['act_err']) < 1e-6
        assert row['act_err'] < row['act_err_svd']


@pytest.mark.parametrize('args,message', [
    (['kron_decompose.py', '8', '32', '1', '--init', 'prune', '--calib', 'X'], '--init vl'),
    (['kron_decompose.py', '8', '32', '1', '--calib', 'VAL', '--calib_tokens', '64'], 'never validation'),
    (['kron_decompose.py', '8', '32', '1', '--calib', 'DATA', '--calib_tokens', '10000000'], 'fewer than --calib_tokens'),
    (['kron_decompose.py', '8', '32', '1', '--calib', 'DATA', '--calib_tokens', '0'], '--calib_tokens must be'),
    (['compress.py', 'lowrank', 'found', '--calib', 'DATA'], "not 'found'"),
    (['compress.py', 'lowrank', '4', '--calib', 'VAL'], 'never validation'),
])
def test_cli_calib_errors_leave_no_output(char_teacher, char_data, tmp_path, args, message):
    out = tmp_path / 'x.pt'
    args = [{'DATA': char_data, 'VAL': os.path.join(char_data, 'val.bin')}.get(a, a) for a in args]
    r = run(*args, '--from', char_teacher, '--out', str(out))
    assert r.returncode == 1 and r.stderr.startswith('error: ') and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
