"""kron_decompose.py against independent references: torch.kron, numpy's SVD of a rearrangement
built block by block, the source model's own weights, and the CLI's exit codes and files."""
import os
from dataclasses import asdict

import numpy as np
import pytest
import torch

from factored import kron_reference as kron_ref
from kron_decompose import (decompose_model, default_out, fit_stats, kron_config, leading_svd, model_structure,
                            nearest_kron, prune_init, rearrange, structure_diagnostics)
from krony_to_gpt import to_dense_gpt
from checkpoint import load_model, save_checkpoint
from model import GPT, GPTConfig
from cli_runs import CliRuns, assert_one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def block_rearrange(W, m1, n1):
    """Van Loan's rearrangement with loops: row i1*n1 + j1 is block (i1, j1) of W, read row by row."""
    W = np.asarray(W, dtype=np.float64)
    m2, n2 = W.shape[0] // m1, W.shape[1] // n1
    R = np.empty((m1 * n1, m2 * n2))
    for i1 in range(m1):
        for j1 in range(n1):
            R[i1 * n1 + j1] = W[i1 * m2:(i1 + 1) * m2, j1 * n2:(j1 + 1) * n2].reshape(-1)
    return R


def svd_tail(W, a_shape, n_factors):
    """sqrt(sum_{i > F} sigma_i^2) / ||W||_F of the block-by-block rearrangement (numpy SVD)."""
    s = np.linalg.svd(block_rearrange(W, *a_shape), compute_uv=False)
    return np.sqrt((s[n_factors:] ** 2).sum()) / np.linalg.norm(np.asarray(W, dtype=np.float64))


# ---------------------------------------------------------------- the math

@pytest.mark.parametrize('shape,a_shape', [((12, 20), (3, 4)), ((8, 8), (8, 1)), ((6, 10), (1, 1)),
                                           ((24, 40), (24, 10))])
def test_rearrange_matches_block_loops(shape, a_shape):
    W = torch.randn(*shape, dtype=torch.float64)
    assert np.array_equal(rearrange(W, a_shape).numpy(), block_rearrange(W, *a_shape))


@pytest.mark.parametrize('a_shape,b_shape,n_factors', [
    ((4, 6), (3, 5), 3),     # square-ish rearrangement: plain SVD
    ((16, 16), (1, 4), 1),   # 81M-like: tall R, QR first
    ((8, 32), (2, 1), 2),    # 96M-like, both factors of the rank bound
    ((3, 5), (4, 6), 2),
])
def test_exact_for_a_true_kronecker_sum(a_shape, b_shape, n_factors):
    torch.manual_seed(0)
    A0 = torch.randn(n_factors, *a_shape, dtype=torch.float64)
    B0 = torch.randn(n_factors, *b_shape, dtype=torch.float64)
    W = kron_ref(A0, B0)
    A, B, S = nearest_kron(W, a_shape, n_factors)
    assert A.shape == A0.shape and B.shape == B0.shape
    assert (kron_ref(A, B) - W).abs().max() < 1e-10 * W.abs().max()
    s = np.linalg.svd(block_rearrange(W, *a_shape), compute_uv=False)
    assert np.allclose(S.numpy(), s[:n_factors], rtol=1e-12, atol=0)
    assert (s[n_factors:] < 1e-10 * s[0]).all()


@pytest.mark.parametrize('a_shape', [(4, 8), (12, 20), (24, 10), (2, 40)])
@pytest.mark.parametrize('n_factors', [1, 2, 4])
def test_vl_error_is_the_svd_tail(a_shape, n_factors):
    torch.manual_seed(1)
    W = torch.randn(24, 40, dtype=torch.float64)
    A, B, _ = nearest_kron(W, a_shape, n_factors)
    err = ((W - kron_ref(A, B)).norm() / W.norm()).item()
    assert abs(err - svd_tail(W, a_shape, n_factors)) < 1e-10
    # and it beats a perturbed answer (optimality, not just consistency with the SVD)
    worse = ((W - kron_ref(A * 1.01, B)).norm() / W.norm()).item()
    assert worse > err


def test_orientation_recovers_the_first_and_second_factor():
    torch.manual_seed(2)
    A0, B0 = torch.randn(3, 5, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    A, B, _ = nearest_kron(torch.kron(A0, B0), (3, 5), 1)
    cos = lambda x, y: (x.flatten() @ y.flatten() / (x.norm() * y.norm())).abs().item()
    assert abs(cos(A[0], A0) - 1) < 1e-12 and abs(cos(B[0], B0) - 1) < 1e-12


# ---------------------------------------------------------------- the leading singular triplets

def check_against_svd(R, k, separated=None):
    """leading_svd's k triplets against torch.linalg.svd's full SVD: the fit's error (from the dense
    difference) within 1e-6 relative of Eckart-Young's, and where sigma_k is separated from sigma_{k+1}
    the fit itself within 1e-5 (separated=None: where the gap is over 1e-3 sigma_1). Returns the
    excess error."""
    U, S, Vh = leading_svd(R, k)
    U0, S0, Vh0 = torch.linalg.svd(R, full_matrices=False)
    if separated is None:
        separated = (S0[k - 1] - S0[k]) > 1e-3 * S0[0]
    best = (U0[:, :k] * S0[:k]) @ Vh0[:k]
    fit = (U * S) @ Vh
    excess = ((R - fit).norm() / (R - best).norm() - 1).item()
    assert abs(excess) < 1e-6
    assert torch.allclose(U.T @ U, torch.eye(k, dtype=R.dtype), atol=1e-10)
    assert torch.allclose(Vh @ Vh.T, torch.eye(k, dtype=R.dtype), atol=1e-10)
    if separated:
        assert ((fit - best).norm() / best.norm()).item() < 1e-5
    return excess


def randomized_svd(R, k, n_iter=10, oversample=10, seed=0):
    """The plain randomized SVD with a fixed number of power iterations (Halko et al. 2011,
    re-orthonormalised every half step), as the paper's released code decomposes."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(R @ torch.randn(R.shape[1], k + oversample, generator=g, dtype=R.dtype))[0]
    for _ in range(n_iter):
        Q = torch.linalg.qr(R @ torch.linalg.qr(R.T @ Q)[0])[0]
    U, S, Vh = torch.linalg.svd(Q.T @ R, full_matrices=False)
    return (Q @ U)[:, :k], S[:k], Vh[:k]


# (n_embd, dims, factors) per paper shape, each with GPT-2 small's factor structure; 67M's second
# factors (24, 48) kept on a 384-wide model, so the rearrangement is 512 x 1152 instead of 2048 x 1152
PAPER_STRUCTURES = {'81M': (768, (768, 768), 1), '96M': (768, (384, 3072), 1), '80M-2': (768, (256, 1024), 2),
                    '92M-4': (768, (256, 1024), 4), '67M': (384, (16, 32), 1)}


@pytest.mark.parametrize('shape', PAPER_STRUCTURES)
def test_leading_triplets_of_gpt2_shaped_matrices(shape):
    n, (d1, d2), f = PAPER_STRUCTURES[shape]
    g = torch.Generator().manual_seed(5)
    for W, a_shape in ((torch.randn(n, 4 * n, generator=g, dtype=torch.float64) * 0.02, (d1, d2)),   # c_fc
                       (torch.randn(4 * n, n, generator=g, dtype=torch.float64) * 0.02, (d2, d1))):  # c_proj
        check_against_svd(rearrange(W, a_shape), f)
        # the factors nearest_kron builds from the triplets: fit_stats' error agrees with the dense one
        A, B, S = nearest_kron(W, a_shape, f)
        dense_err = ((W - kron_ref(A, B)).norm() / W.norm()).item()
        assert abs(fit_stats(W, A, B, normalize=False)['rel_err'] - dense_err) < 1e-9


def test_optimal_where_a_10_iteration_randomized_svd_is_not():
    """random GPT-2 weights rearranged for 67M: a flat spectrum whose leading gaps are ~0.5%, where a
    randomized SVD (the method of torch.svd_lowrank, here with 10 power iterations) falls measurably
    short and leading_svd does not"""
    W = torch.randn(384, 1536, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 0.02
    R = rearrange(W, (16, 32))
    S0 = torch.linalg.svdvals(R)
    for k in (1, 2):
        U, S, Vh = randomized_svd(R, k)
        best = (S0[k:] ** 2).sum().sqrt()
        assert ((R - (U * S) @ Vh).norm() / best).item() - 1 > 1e-5  # measurably worse than optimal
        excess = check_against_svd(R, k, separated=True)
        assert abs(excess) < 1e-6


def test_low_rank_and_deterministic():
    """an exact sum of two Kronecker products: recovered exactly, the same factors every time, and the
    one-thread QR of its thin rearrangement leaves torch's thread count as it was"""
    g = torch.Generator().manual_seed(7)
    W = kron_ref(torch.randn(2, 16, 32, generator=g, dtype=torch.float64),
                 torch.randn(2, 24, 48, generator=g, dtype=torch.float64))
    threads = torch.get_num_threads()
    A, B, S = nearest_kron(W, (16, 32), 2)
    assert torch.get_num_threads() == threads  # one thread inside only
    assert (kron_ref(A, B) - W).abs().max() < 1e-10 * W.abs().max()
    again = nearest_kron(W, (16, 32), 2)
    assert torch.equal(again[0], A) and torch.equal(again[1], B)


@pytest.mark.parametrize('normalize', [True, False])
def test_fit_stats_match_the_dense_difference(normalize):
    torch.manual_seed(4)
    W = torch.randn(12, 20, dtype=torch.float64)
    A, B = torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 3, 4, dtype=torch.float64)
    W_hat = kron_ref(A, B)
    s = fit_stats(W, A, B, normalize)
    alpha = (W.norm() / W_hat.norm()).item() if normalize else 1.0
    assert abs(s['alpha'] - alpha) < 1e-12
    assert abs(s['kept'] - (W_hat.norm() / W.norm()).item()) < 1e-12
    assert abs(s['rel_err'] - ((W - W_hat).norm() / W.norm()).item()) < 1e-12
    assert abs(s['rel_err_final'] - ((W - alpha * W_hat).norm() / W.norm()).item()) < 1e-12


@pytest.mark.parametrize('eps', [0.1, 0.0, 0.37])
def test_prune_keeps_rows_or_columns(eps):
    torch.manual_seed(3)
    W = torch.randn(8, 12, dtype=torch.float64)  # c_fc-like: second factor (2, 1)
    A, B = prune_init(W, (4, 12), eps)
    Wp = kron_ref(A, B)
    assert torch.equal(Wp[0::2], W[0::2])
    assert torch.allclose(Wp[1::2], eps * W[0::2], rtol=0, atol=1e-15)
    Wt = W.t().contiguous()  # c_proj-like: second factor (1, 2)
    A, B = prune_init(Wt, (12, 4), eps)
    Wp = kron_ref(A, B)
    assert torch.equal(Wp[:, 0::2], Wt[:, 0::2])
    assert torch.allclose(Wp[:, 1::2], eps * Wt[:, 0::2], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match='prune needs'):
        prune_init(W, (2, 6), eps)


@pytest.mark.parametrize('shape,a_shape,n_factors,rank', [
    ((32, 128), (32, 32), 1, 6),   # 81M-like, B (1, 4): (1024 + 4) / 160 = 6.4 -> rank 6
    ((32, 128), (8, 16), 2, 2),    # 2 * (128 + 32) / 160 = 2
    ((128, 32), (16, 8), 1, 1),    # c_proj's orientation: (128 + 32) / 160 = 1
])
def test_structure_diagnostics_against_numpy(shape, a_shape, n_factors, rank):
    W = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    d = structure_diagnostics(W, a_shape, n_factors)
    s = np.linalg.svd(block_rearrange(W.numpy(), *a_shape), compute_uv=False)
    w = np.linalg.svd(W.numpy(), compute_uv=False)
    assert d['sigma_ratio'] == pytest.approx(s[1] / s[0], rel=1e-12)
    assert d['vl_energy'] == pytest.approx((s[:n_factors] ** 2).sum() / (W.numpy() ** 2).sum(), rel=1e-12)
    assert d['vl_rel_err'] == pytest.approx(svd_tail(W.numpy(), a_shape, n_factors), rel=1e-9)
    assert d['svd_rank'] == rank
    assert d['svd_rel_err'] == pytest.approx(np.sqrt((w[rank:] ** 2).sum() / (w ** 2).sum()), rel=1e-12)
    # the Van Loan fit keeps what its factors keep, seen through fit_stats on the factors themselves
    A, B, _ = nearest_kron(W, a_shape, n_factors)
    assert d['vl_rel_err'] == pytest.approx(fit_stats(W, A, B, normalize=False)['rel_err'], rel=1e-9)


def test_random_direction_share_by_monte_carlo():
    """random_share = F / q: F random orthonormal directions on R's smaller side (q), each with its
    best other factor, keep on average F/q of the energy; 4,000 draws, loosely."""
    W = torch.randn(32, 128, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    W[:, :4] *= 5  # an uneven spectrum, so the mean is not trivially 1/q for every direction
    R = torch.as_tensor(block_rearrange(W.numpy(), 16, 32))  # (512, 8): q = 8
    gen = torch.Generator().manual_seed(5)
    for F in (1, 2):
        share = [((R @ torch.linalg.qr(torch.randn(8, F, generator=gen, dtype=torch.float64))[0]) ** 2).sum().item()
                 / (R ** 2).sum().item() for _ in range(4000)]
        assert np.mean(share) == pytest.approx(F / 8, abs=0.01)
        assert structure_diagnostics(W, (16, 32), F)['random_share'] == F / 8


def test_structure_of_a_true_kronecker_product():
    gen = torch.Generator().manual_seed(6)
    A, B = torch.randn(8, 16, generator=gen, dtype=torch.float64), torch.randn(4, 8, generator=gen, dtype=torch.float64)
    d = structure_diagnostics(torch.kron(A, B), (8, 16))
    assert d['sigma_ratio'] < 1e-7 and d['vl_energy'] == pytest.approx(1.0) and d['vl_rel_err'] < 1e-6


# ---------------------------------------------------------------- whole models

def tiny_dense(seed=0, **kw):
    """Dense GPT with every parameter random (biases and LayerNorms too), so copies can be told apart."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=64), **kw}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


@pytest.mark.parametrize('init,normalize,scalers,dims', [
    ('vl', False, False, (8, 16, 2)),
    ('vl', True, False, (32, 32, 1)),    # 81M-like, B (1, 4)
    ('vl', True, True, (8, 16, 3)),
    ('prune', False, False, (16, 128, 1)),
    ('prune', True, True, (16, 128, 1)),
    ('random', True, False, (8, 16, 2)),  # normalisation does not apply
])
def test_decompose_model(init, normalize, scalers, dims):
    dense = tiny_dense()
    eps = 0.2
    with torch.no_grad():
        kron, stats = decompose_model(dense, *dims, init=init, normalize=normalize, scalers=scalers, eps=eps)
    assert kron.config.mlp == 'kron' and kron.config.kron_scalers == scalers
    assert kron.lm_head.weight is kron.transformer.wte.weight  # still tied

    # every non-MLP parameter and the MLP biases are the source's
    src, out = dense.state_dict(), kron.state_dict()
    copied = [k for k in src if not k.endswith(('mlp.c_fc.weight', 'mlp.c_proj.weight'))]
    assert len(copied) == len(src) - 2 * dense.config.n_layer
    for k in copied:
        assert torch.equal(src[k], out[k]), k

    folded = dict(to_dense_gpt(kron).mlp_linears())
    for (name, d), (_, k), s in zip(dense.mlp_linears(), kron.mlp_linears(), stats):
        assert s['layer'] == name
        W = d.weight.detach().t().double()  # nn.Linear (out, in) -> (in, out)
        A, B = k.A.detach().double(), k.B.detach().double()
        scale = None if k.scale is None else k.scale.detach().double()
        W_model = kron_ref(A, B, scale)
        # the layer computes x @ (sum s_f torch.kron(A_f, B_f)) + b, and the export folds the same matrix
        x = torch.randn(5, W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            y = k.double()(x) - k.bias
            assert torch.allclose(y, x @ W_model, rtol=0, atol=1e-10)
            assert torch.allclose(folded[name].weight.double().t(), W_model, rtol=0, atol=1e-6)
        norm, norm_model = W.norm().item(), folded[name].weight.double().norm().item()
        assert abs((W - W_model).norm().item() / norm - s['rel_err_final']) < 1e-5
        if scalers:
            assert torch.allclose(scale, torch.full_like(scale, s['alpha']))
        if init == 'random':
            assert s['alpha'] == 1.0 and abs(norm_model / norm - 1) > 0.1
        elif normalize:
            assert abs(norm_model / norm - 1) < 1e-5  # paper III-E: the norm is kept
            assert abs(s['alpha'] - 1 / s['kept']) < 1e-9 and s['alpha'] > 1
        else:
            assert s['alpha'] == 1.0 and s['rel_err'] == s['rel_err_final']
        if init == 'vl':
            assert abs(s['rel_err'] - svd_tail(W, A.shape[1:], A.shape[0])) < 1e-9
        if init == 'prune':
            W_plain = W_model / s['alpha']
            even, odd = (W_plain[0::2], W_plain[1::2]) if W.shape[0] < W.shape[1] else (W_plain[:, 0::2], W_plain[:, 1::2])
            kept = W[0::2] if W.shape[0] < W.shape[1] else W[:, 0::2]  # rows / columns on the n_embd side
            assert torch.allclose(even, kept, rtol=1e-6, atol=0)
            assert torch.allclose(odd, eps * kept, rtol=1e-6, atol=1e-12)


def test_kron_config_refusals():
    dense = GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=16, vocab_size=64)
    with pytest.raises(ValueError, match=r"valid: \[1, 2, 4, 8, 16, 32, 64\]"):
        kron_config(dense, 48, 256, 1)
    with pytest.raises(ValueError, match=r"dim_2=100 .* valid: \[1, 2, 4, 8, 16, 32, 64, 128, 256\]"):
        kron_config(dense, 32, 100, 1)
    with pytest.raises(ValueError, match='between 1 and 2'):
        kron_config(dense, 32, 256, 3)
    with pytest.raises(ValueError, match='`32 256 1`'):
        kron_config(dense, 64, 64, 1, init='prune')
    with pytest.raises(ValueError, match='`32 256 1`'):
        kron_config(dense, 32, 256, 2, init='prune')
    with pytest.raises(ValueError, match='dense'):
        kron_config(kron_config(dense, 64, 64, 1), 64, 64, 1)
    assert kron_config(dense, 32, 256, 1, init='prune').kron_dim1 == 32


def test_default_out_names_shape_and_init():
    assert default_out(768, 768, 1, 'vl', True, False) == os.path.join('checks', 'kron_768_768_1_vl.pt')
    assert default_out(256, 1024, 4, 'vl', False, True) == os.path.join('checks', 'kron_256_1024_4_vl_nonorm_scalers.pt')
    assert default_out(384, 3072, 1, 'random', False, False) == os.path.join('checks', 'kron_384_3072_1_random.pt')


# ---------------------------------------------------------------- the command line

@pytest.fixture(scope='module', autouse=True)
def cli(tmp_path_factory, tiny_hf_dir):
    d = tmp_path_factory.mktemp('cli')
    dense = GPT(GPTConfig(n_layer=1, n_head=4, n_embd=64, block_size=16, vocab_size=64))
    save_checkpoint({'model': dense.state_dict(), 'model_args': asdict(dense.config)}, d / 'dense.pt')
    kron = GPT(GPTConfig(n_layer=1, n_head=4, n_embd=64, block_size=16, vocab_size=64, mlp='kron',
                         kron_dim1=64, kron_dim2=64))
    save_checkpoint({'model': kron.state_dict(), 'model_args': asdict(kron.config)}, d / 'kron.pt')
    (d / 'notes.txt').write_text('not a checkpoint\n')
    torch.save({'weights': torch.zeros(3)}, d / 'other.pt')  # a torch file, but not a GPT checkpoint
    src = str(d / 'dense.pt')
    good = {'prune': ['kron_decompose.py', '32', '256', '1', '--init', 'prune', '--scalers', '--eps', '0.1',
                      '--from', tiny_hf_dir, '--out', str(d / 'prune.pt')]}
    bad = {name: ['kron_decompose.py', *args, '--out', str(d / f'{name}.out.pt')] for name, args in {
        'dim1': ['48', '256', '1', '--from', src],
        'factors': ['32', '256', '3', '--from', src],
        'missing': ['64', '64', '1', '--from', str(d / 'missing.pt')],
        'missing_dir': ['64', '64', '1', '--from', str(d / 'nowhere')],
        'text': ['64', '64', '1', '--from', str(d / 'notes.txt')],
        'not_gpt': ['64', '64', '1', '--from', str(d / 'other.pt')],
        'prune_shape': ['64', '64', '1', '--init', 'prune', '--from', src],
        'not_dense': ['64', '64', '1', '--from', str(d / 'kron.pt')],
    }.items()}
    runs = CliRuns(good, bad, real='dim1')
    runs.dir = d
    yield runs
    for p in runs.procs.values():
        p.communicate()


def test_cli_prune_from_hf_dir(cli, tiny_hf_dir):
    from safetensors.torch import load_file
    rc, out, err = cli.wait('prune')
    assert rc == 0, err
    assert 'transformer.h.1.mlp.c_proj' in out and 'parameters (paper count)' in out
    # the structure table: one row per matrix, as model_structure computes it for the source
    rows = [line.split() for line in out.splitlines()[out.splitlines().index(next(
        line for line in out.splitlines() if line.startswith('structure of each W'))) + 2:][:4]]
    expected = model_structure(load_model(tiny_hf_dir)[0], 32, 256, 1)
    assert [r[0] for r in rows] == [e['layer'] for e in expected]
    for r, e in zip(rows, expected):
        assert [float(x) for x in r[1:]] == pytest.approx(
            [e[k] for k in ('sigma_ratio', 'vl_energy', 'random_share', 'vl_rel_err', 'svd_rank', 'svd_rel_err')],
            abs=6e-4)
    model, ckpt = load_model(str(cli.dir / 'prune.pt'))
    assert model.config.mlp == 'kron' and (model.config.kron_dim1, model.config.kron_dim2) == (32, 256)
    assert ckpt['decompose']['init'] == 'prune' and len(ckpt['decompose']['stats']) == 4
    # HF Conv1D weights are already (in, out): c_fc's kept rows and c_proj's kept columns
    hf = load_file(os.path.join(tiny_hf_dir, 'model.safetensors'))
    fc, proj = model.transformer.h[1].mlp.c_fc, model.transformer.h[1].mlp.c_proj
    W_fc, W_proj = hf['transformer.h.1.mlp.c_fc.weight'], hf['transformer.h.1.mlp.c_proj.weight']
    assert torch.equal(fc.A[0], W_fc[0::2]) and torch.equal(proj.A[0], W_proj[:, 0::2])
    alpha = (W_fc.double().norm() / (W_fc[0::2].double().norm() * 1.01 ** 0.5)).item()
    assert abs(fc.scale.item() - alpha) < 1e-5
    assert torch.equal(model.transformer.wpe.weight, hf['transformer.wpe.weight'])


@pytest.mark.parametrize('case,expected', [
    ('dim1', ['dim_1=48', 'valid: [1, 2, 4, 8, 16, 32, 64]']),
    ('factors', ['between 1 and 2']),
    ('missing', ['missing.pt', 'does not exist']),
    ('missing_dir', ['nowhere', 'does not exist']),
    ('text', ['notes.txt']),
    ('not_gpt', ['other.pt', 'not a GPT checkpoint']),
    ('prune_shape', ['`32 256 1`']),
    ('not_dense', ["mlp='kron'"]),
])
def test_cli_bad_input(cli, case, expected):
    assert_one_line_error(*cli.bad(case), expected)
    out = cli.dir / f'{case}.out.pt'
    assert not out.exists() and not list(cli.dir.glob(f'{out.name}.tmp*'))
