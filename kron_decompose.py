"""
Initialise a Krony-PT model from a dense GPT-2: every MLP matrix becomes sum_f s_f * A_f (x) B_f.

    python kron_decompose.py DIM_1 DIM_2 N_FACTORS [--init vl|prune|random] [--normalize | --no-normalize]
                             [--scalers] [--eps 0.1] [--from gpt2|HF_DIR|CHECKPOINT] [--out PATH] [--force] [--seed N]
                             [--calib TEXT_FILE_OR_DATASET [--calib_tokens N] [--als_sweeps N]] [--permute]

    python kron_decompose.py 768 768 1                  # 81M: Van Loan init, norm restored
    python kron_decompose.py 384 3072 1 --init prune    # 96M: every other row of W, B = [1, 0.1]^T
    python kron_decompose.py 256 1024 4 --scalers       # 92M-4: per-factor scalars start at alpha
    python kron_decompose.py 768 768 1 --calib data/owt --permute   # fit to activations, reordered units

c_fc's first factor is (DIM_1, DIM_2), c_proj's is (DIM_2, DIM_1) (x @ W orientation, see model.py).
Inits: `vl` the Frobenius-nearest sum of N_FACTORS Kronecker products (Van Loan & Pitsianis),
`prune` (paper section III-G, only the shape whose c_fc second factor is (2, 1), e.g. `384 3072 1`),
`random` N(0, 0.02) factors as a baseline. With normalisation (paper section III-E) the result is
rescaled by alpha = ||W||_F / ||W_hat||_F so it keeps W's norm: folded into A_f, or, with --scalers,
the starting value of every s_f. Writes checks/kron_{DIM_1}_{DIM_2}_{N_FACTORS}_{init}[_nonorm][_scalers].pt
(override with --out; an existing file is replaced only with --force), a checkpoint that train.py
starts from (init_from=PATH) and model.load_model loads. Everything but the MLP weight matrices (attention, embeddings, LayerNorms,
MLP biases) is copied from the source. It also prints how much Kronecker structure each matrix has at
the shapes asked for (structure_diagnostics), whatever the init.
With --calib (vl) each matrix is fitted to the activations it receives on training text rather
than to its weights (calib.py), and the errors on held-out calibration tokens are printed next to
plain Van Loan's; --permute first reorders each MLP's hidden units, which changes nothing in the
dense model, so that the fit keeps more (reorder.py). Names gain _calib and _perm.
"""

import argparse
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict

import torch

import errors
from calib import ALS_SWEEPS, CALIB_TOKENS, DAMP, act_err, aware_kron, calib_ids, damped, mlp_grams
from checkpoint import check_finite, load_model, save_checkpoint
from factored import kron_rank_bound, kron_reference, kron_shapes
from outputs import check_destination, output_lock
from model import convert_mlps, with_mlp
from tokenizer import stored_vocab
from reorder import ROUNDS, model_orders, permute_grams, permute_hidden

INITS = ('vl', 'prune', 'random')


def nearest_kron(W, a_shape, n_factors):
    """Frobenius-nearest sum of n_factors Kronecker products to W (Van Loan & Pitsianis 1993).

    rearrange(W) moves W's entries so that A (x) B becomes the rank-one vec(A) vec(B)^T; moving
    entries keeps Frobenius distances, so the nearest sum of F products is the nearest rank-F matrix
    to rearrange(W): its F leading singular triplets (Eckart-Young), each side scaled by
    sqrt(sigma_f). Returns A (F, m1, n1), B (F, m2, n2) and the F leading singular values of
    rearrange(W), all float64. The error is ||W - sum A_f (x) B_f||_F = sqrt(||W||_F^2 - sum_f sigma_f^2)."""
    m1, n1 = a_shape
    m2, n2 = factor_shapes(W, a_shape, n_factors)
    R = rearrange(W.detach().to(torch.float64), a_shape)
    U, S, Vh = leading_svd(R, n_factors)
    root = S.sqrt()
    A = (U * root).T.reshape(n_factors, m1, n1)
    B = (Vh * root[:, None]).reshape(n_factors, m2, n2)
    return A.contiguous(), B.contiguous(), S


def rearrange(W, a_shape):
    """R such that W = sum_f A_f (x) B_f  <=>  R = sum_f vec(A_f) vec(B_f)^T (Van Loan & Pitsianis):
    the (m2 x n2) block (i1, j1) of W, read row by row, becomes row i1*n1 + j1 of R.
    Indexing as torch.kron: kron(A, B)[i1*m2 + i2, j1*n2 + j2] = A[i1, j1] * B[i2, j2]."""
    m1, n1 = a_shape
    m2, n2 = W.shape[0] // m1, W.shape[1] // n1
    return W.reshape(m1, m2, n1, n2).permute(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)


def factor_shapes(W, a_shape, n_factors):
    """B's shape for W and a_shape; raises if a_shape does not tile W or n_factors passes the rank bound."""
    (M, N), (m1, n1) = W.shape, a_shape
    if m1 <= 0 or n1 <= 0 or M % m1 or N % n1:
        raise ValueError(f"first factor {tuple(a_shape)} does not tile a {M}x{N} matrix")
    m2, n2 = M // m1, N // n1
    bound = kron_rank_bound(m1, n1, m2, n2)
    if not 1 <= n_factors <= bound:
        raise ValueError(f"{n_factors} factors: must be between 1 and {bound}, the rank bound for "
                         f"factors {(m1, n1)} and {(m2, n2)}")
    return m2, n2


def leading_svd(R, k):
    """(U (p, k), S (k,), Vh (k, q)): the k leading singular triplets of R from LAPACK's full SVD.
    A long thin R (the paper's shapes but 67M: 768 768 rearranges to 589824 x 4) is reduced by a
    QR first, half the time of the SVD of R and as stable; its transpose likewise."""
    # the full SVD even where few triplets are kept: an iterative solver for them saved about 9 s
    # over the 24 matrices of the 67M shape alone, whose run computes all singular values of the
    # same matrices anyway (structure_diagnostics); measurements in docs/LOG.md
    p, q = R.shape
    if p > 2 * q:
        with one_thread():  # thin, so memory-bound: more threads gain little
            Q, T = torch.linalg.qr(R)  # (p, q), (q, q)
            U, S, Vh = torch.linalg.svd(T)
            return Q @ U[:, :k], S[:k], Vh[:k]
    if q > 2 * p:
        U, S, Vh = leading_svd(R.T, k)
        return Vh.T, S, U.T
    U, S, Vh = torch.linalg.svd(R, full_matrices=False)
    return U[:, :k], S[:k], Vh[:k]


@contextmanager
def one_thread():
    """torch on one thread inside the block, for memory-bound or small steps (the QR of a long thin
    matrix here, calib.py's and reorder.py's small systems): more threads gain little, and on a
    loaded machine they wait on each other, which made whole solves several times slower
    (measurements in docs/LOG.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def prune_init(W, a_shape, eps=0.1):
    """Paper section III-G: with a second factor (2, 1), A = every other row of W and B = [1, eps]^T,
    so the kept rows are W's and each dropped row becomes eps times the row above it; with (1, 2)
    (c_proj's transposed shape) the same along the columns. eps > 0 avoids an exact zero."""
    m2, n2 = factor_shapes(W, a_shape, 1)
    W = W.detach().to(torch.float64)
    if (m2, n2) == (2, 1):
        A, B = W[0::2, :], torch.tensor([[1.0], [eps]], dtype=torch.float64)
    elif (m2, n2) == (1, 2):
        A, B = W[:, 0::2], torch.tensor([[1.0, eps]], dtype=torch.float64)
    else:
        raise ValueError(f"prune needs a second factor of shape (2, 1) or (1, 2), not {(m2, n2)}")
    return A.unsqueeze(0).contiguous(), B.unsqueeze(0)


def norm_alpha(norm_w, norm_hat):
    """Paper section III-E, adaptive normalisation: alpha = ||W||_F / ||W_hat||_F, so that
    alpha * W_hat keeps W's Frobenius norm (1 if W_hat is zero: nothing to rescale)."""
    return norm_w / norm_hat if norm_hat > 0 else 1.0


def fit_stats(W, A, B, normalize=True):
    """How W_hat = sum_f A_f (x) B_f fits W, on the factors alone (no dense W_hat: for GPT-2 the
    passes over 2.4M-entry matrices are what costs): <A (x) B, C (x) D> = <A, C><B, D> and
    <W, A (x) B> = vec(A)^T rearrange(W) vec(B). Returns rel_err = ||W - W_hat|| / ||W||,
    kept = ||W_hat|| / ||W||, alpha (1 without normalize) and rel_err_final of alpha * W_hat."""
    R = rearrange(W.detach().to(torch.float64), A.shape[1:])
    a, b = A.reshape(A.shape[0], -1).to(torch.float64), B.reshape(B.shape[0], -1).to(torch.float64)
    w2 = (R * R).sum().item()
    cross = ((a @ R) * b).sum().item()          # <W, W_hat>
    hat2 = ((a @ a.T) * (b @ b.T)).sum().item()  # ||W_hat||^2
    alpha = norm_alpha(w2 ** 0.5, hat2 ** 0.5) if normalize else 1.0
    err = lambda c: max(w2 - 2 * c * cross + c * c * hat2, 0.0) ** 0.5 / w2 ** 0.5
    return dict(rel_err=err(1.0), kept=(hat2 / w2) ** 0.5, alpha=alpha, rel_err_final=err(alpha))


def structure_diagnostics(W, a_shape, n_factors=1):
    """How much sum-of-Kronecker structure W has at a_shape, from the singular values s of
    R = rearrange(W) and of W itself: sigma_ratio = s_2 / s_1 (near 1, the leading direction is
    nearly arbitrary: a small change of W turns it), vl_energy = (s_1^2 + ... + s_F^2) / ||W||^2
    (what the Van Loan fit keeps), random_share = F / min(R's sides) (the expected share of F
    random orthonormal directions on R's smaller side, each paired with its best other factor:
    E[||R v||^2] = ||R||^2 / q for a uniform unit v in R^q), vl_rel_err = sqrt(1 - vl_energy), and
    svd_rel_err of the truncated SVD of W with about the factors' parameters (rank svd_rank)."""
    W = W.detach().to(torch.float64)
    (M, N), (m1, n1) = W.shape, a_shape
    m2, n2 = factor_shapes(W, a_shape, n_factors)
    s = torch.linalg.svdvals(rearrange(W, a_shape)) ** 2
    energy = (s[:n_factors].sum() / s.sum()).item()
    w = torch.linalg.svdvals(W) ** 2
    rank = max(1, round(n_factors * (m1 * n1 + m2 * n2) / (M + N)))
    return dict(sigma_ratio=(s[1] / s[0]).sqrt().item() if len(s) > 1 else 0.0, vl_energy=energy,
                random_share=n_factors / len(s), vl_rel_err=max(1 - energy, 0.0) ** 0.5, svd_rank=rank,
                svd_rel_err=(w[rank:].sum() / w.sum()).sqrt().item())


def model_structure(dense_model, dim1, dim2, n_factors=1):
    """structure_diagnostics of every MLP matrix of a dense GPT at the factor shapes that
    `DIM_1 DIM_2 N_FACTORS` gives (c_fc's A is (dim1, dim2), c_proj's (dim2, dim1))."""
    fc, proj = kron_shapes(with_mlp(dense_model.config, 'kron', kron_dim1=dim1, kron_dim2=dim2,
                                    kron_factors=n_factors))
    return [dict(layer=name, **structure_diagnostics(lin.dense_weight(), (fc if name.endswith('c_fc') else proj)[0],
                                                     n_factors))
            for name, lin in dense_model.mlp_linears()]


def print_structure(rows):
    print("structure of each W at these shapes: s2/s1 of rearrange(W), energy the Van Loan fit keeps, "
          "a random direction's share, the errors of the fit and of a truncated SVD of W the same size")
    print(f"{'matrix':<28} {'s2/s1':>6} {'VL energy':>9} {'random':>7} {'VL err':>7} {'SVD rank':>8} {'SVD err':>8}")
    for r in rows:
        print(f"{r['layer']:<28} {r['sigma_ratio']:6.3f} {r['vl_energy']:9.4f} {r['random_share']:7.4f} "
              f"{r['vl_rel_err']:7.4f} {r['svd_rank']:8d} {r['svd_rel_err']:8.4f}")


def kron_config(config, dim1, dim2, n_factors, init='vl', scalers=False):
    """The Kronecker GPTConfig for a dense source config; raises ValueError for anything
    decompose_model cannot do, so callers can check before computing or writing."""
    if config.mlp != 'dense':
        raise ValueError(f"the source has mlp={config.mlp!r}; decompose a dense model (hub name, HF "
                         f"directory or dense checkpoint), e.g. one exported with krony_to_gpt.py")
    if init not in INITS:
        raise ValueError(f"init {init!r} is not one of {', '.join(INITS)}")
    kron = with_mlp(config, 'kron', kron_dim1=dim1, kron_dim2=dim2, kron_factors=n_factors,
                    kron_scalers=scalers)  # __post_init__ checks the divisors and the rank bound
    if init == 'prune':
        (_, b_fc), _ = kron_shapes(kron)
        if b_fc != (2, 1) or n_factors != 1:
            n, h = config.n_embd, config.mlp_width
            raise ValueError(f"--init prune supports only `{n // 2} {h} 1` for n_embd={n} (c_fc's second "
                             f"factor (2, 1), one factor); got `{dim1} {dim2} {n_factors}` with second "
                             f"factor {b_fc}")
    return kron


def decompose_model(dense_model, dim1, dim2, n_factors, init='vl', normalize=True, scalers=False,
                    eps=0.1, seed=0, grams=None, sweeps=ALS_SWEEPS, orders=None, damp=DAMP):
    """(Kronecker GPT, per-matrix stats) from a dense GPT.

    Non-MLP parameters and the MLP biases are copied. For each MLP matrix W (x @ W orientation),
    W_hat = sum_f A_f (x) B_f from `init`; with normalize, alpha = ||W|| / ||W_hat|| is folded into
    A_f, or with scalers every s_f starts at alpha (s_f = 1 without normalize). `random` draws
    N(0, 0.02) factors and is never normalised (its alpha would only undo the baseline's scale).
    Stats per matrix: rel_err = ||W - W_hat|| / ||W|| (the Van Loan optimum for vl), kept =
    ||W_hat|| / ||W||, alpha and rel_err_final of the matrix actually stored (alpha * W_hat).

    vl only: with grams (calib.mlp_grams of dense_model) each matrix is fitted to its activations
    (calib.aware_kron on the fit Gram matrix, damped by damp); with orders (reorder.model_orders)
    the hidden units are reordered first (reorder.permute_hidden: the same function). Either adds
    to the stats plain Van Loan's weight error in the source order (rel_err_vl) and the norm of
    W (w_norm); grams also the held-out activation errors of the fit, of the stored matrix and of
    plain Van Loan (act_err, act_err_final, act_err_vl; calib.act_err), ||X W|| on the held-out
    tokens (act_norm) and the ALS summary (als)."""
    config = kron_config(dense_model.config, dim1, dim2, n_factors, init, scalers)
    if (grams is not None or orders) and init != 'vl':
        raise ValueError("--calib and --permute go with --init vl")
    source, fit_grams = dense_model, grams
    if orders:
        dense_model = permute_hidden(dense_model, orders)
        fit_grams = permute_grams(grams, orders) if grams is not None else None
    originals = dict(source.mlp_linears())
    normalize = normalize and init != 'random'
    gen = torch.Generator().manual_seed(seed)
    stats = []

    def factors(name, dense_lin, lin):
        W = dense_lin.dense_weight().detach()  # (in, out)
        a_shape = tuple(lin.A.shape[1:])
        info = None
        if init == 'vl' and grams is not None:
            A, B, info = aware_kron(W, a_shape, n_factors, damped(fit_grams[name]['fit'], damp), sweeps)
        elif init == 'vl':
            A, B, _ = nearest_kron(W, a_shape, n_factors)
        elif init == 'prune':
            A, B = prune_init(W, a_shape, eps)
        else:
            A = torch.randn(lin.A.shape, generator=gen, dtype=torch.float64) * 0.02
            B = torch.randn(lin.B.shape, generator=gen, dtype=torch.float64) * 0.02
        stat = fit_stats(W, A, B, normalize)
        stats.append(dict(layer=name, **stat))
        if grams is not None or orders:
            stats[-1].update(compare_plain(W, A, B, stat['alpha'], originals[name].dense_weight().detach(),
                                           fit_grams and fit_grams[name]['held'], grams and grams[name]['held']))
            if info:
                stats[-1]['als'] = info
        if scalers:
            return {'A': A, 'B': B, 'scale': torch.full((n_factors,), stat['alpha'], dtype=torch.float64)}
        return {'A': stat['alpha'] * A, 'B': B}

    model = convert_mlps(dense_model, config, factors)
    return model, stats


def compare_plain(W, A, B, alpha, W_source, C_held=None, C_held_source=None):
    """The fit (A, B) of W next to plain Van Loan's of W_source (the same matrix before any
    reordering of the hidden units): weight errors, and with the held-out Gram matrices (of W's
    order and of W_source's) the activation errors of the fit, the stored alpha * fit and Van Loan."""
    W, W_source = W.double(), W_source.double()
    A0, B0, _ = nearest_kron(W_source, A.shape[1:], A.shape[0])
    out = dict(rel_err_vl=fit_stats(W_source, A0, B0, normalize=False)['rel_err'], w_norm=W.norm().item())
    if C_held is not None:
        W_hat = kron_reference(A.double(), B.double())
        out.update(act_err=act_err(W, W_hat, C_held), act_err_final=act_err(W, alpha * W_hat, C_held),
                   act_err_vl=act_err(W_source, kron_reference(A0, B0), C_held_source),
                   act_norm=(W * (C_held @ W)).sum().item() ** 0.5)
    return out


def default_out(dim1, dim2, n_factors, init, normalize, scalers, calib=False, permute=False):
    name = f"kron_{dim1}_{dim2}_{n_factors}_{init}"
    if not normalize and init != 'random':
        name += '_nonorm'
    if scalers:
        name += '_scalers'
    if calib:
        name += '_calib'
    if permute:
        name += '_perm'
    return os.path.join('checks', name + '.pt')


def print_orders(report, b_fc, whitened):
    if not report:
        print(f"--permute: c_fc's second factor {b_fc} has one column, so it does not group hidden units: "
              f"their order does not change the fit (kept as is)")
        return
    print(f"--permute: energy the fit keeps, share of ||W||^2{' (whitened)' if whitened else ''}, "
          f"before -> after reordering the hidden units")
    print(f"{'layer':>5} {'c_fc':>17} {'c_proj':>17} {'units moved':>12}")
    for r in report:
        print(f"{r['layer']:>5} {r['fc_before']:8.4f}->{r['fc_after']:.4f} {r['proj_before']:8.4f}->{r['proj_after']:.4f} "
              f"{r['moved']:>12}")


def print_comparison(stats, activations):
    """Relative errors of the fit next to plain Van Loan's, per matrix and in total (each total
    is the error of all matrices together: root of the summed squares over the summed norms)."""
    cols = [('rel_err_vl', 'w_norm', 'weights vl'), ('rel_err', 'w_norm', 'fit')]
    if activations:
        cols += [('act_err_vl', 'act_norm', 'act. vl'), ('act_err', 'act_norm', 'fit'),
                 ('act_err_final', 'act_norm', 'stored')]
    print("relative errors, plain Van Loan (vl) vs this fit: weights ||W - W_hat|| / ||W||"
          + (", held-out activations ||X (W - W_hat)|| / ||X W|| (stored: with alpha)" if activations else ""))
    width = [max(8, len(title)) for _, _, title in cols]
    print(f"{'matrix':<28} " + ' '.join(f"{title:>{w}}" for (_, _, title), w in zip(cols, width)))
    for s in stats:
        print(f"{s['layer']:<28} " + ' '.join(f"{s[k]:{w}.4f}" for (k, _, _), w in zip(cols, width)))
    total = [(sum((s[k] * s[n]) ** 2 for s in stats) / sum(s[n] ** 2 for s in stats)) ** 0.5 for k, n, _ in cols]
    print(f"{'total':<28} " + ' '.join(f"{t:{w}.4f}" for t, w in zip(total, width)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('dim1', type=int, metavar='DIM_1', help="c_fc's first factor is (DIM_1, DIM_2); it must divide n_embd")
    p.add_argument('dim2', type=int, metavar='DIM_2', help='it must divide 4 * n_embd')
    p.add_argument('n_factors', type=int, metavar='N_FACTORS', help='Kronecker products summed per matrix')
    p.add_argument('--init', choices=INITS, default='vl',
                   help="vl: Van Loan's nearest sum of Kronecker products (default); prune: every other row "
                        "(only `n/2 4n 1`); random: N(0, 0.02) factors, a baseline")
    p.add_argument('--normalize', action=argparse.BooleanOptionalAction, default=True,
                   help='rescale by alpha = ||W|| / ||W_hat|| (paper section III-E; default on)')
    p.add_argument('--scalers', action='store_true', help='learnable s_f per factor, starting at alpha')
    p.add_argument('--eps', type=float, default=0.1, help='prune: second factor [1, eps] (default 0.1)')
    p.add_argument('--from', dest='source', default='gpt2',
                   help='the dense model: hub name (default gpt2), save_pretrained directory or dense checkpoint')
    p.add_argument('--out', default=None,
                   help='default checks/kron_DIM_1_DIM_2_N_FACTORS_INIT[_nonorm][_scalers][_calib][_perm].pt')
    p.add_argument('--force', action='store_true', help='replace an existing --out file')
    p.add_argument('--seed', type=int, default=0, help='random init, and the --permute search')
    p.add_argument('--calib', metavar='TEXT_FILE_OR_DATASET', default=None,
                   help="vl: fit each matrix to the inputs it receives on TRAINING text (a UTF-8 file, a "
                        "prepared dataset directory or name under data/, whose train.bin is read; never "
                        "validation or test data) instead of to its weights (calib.py): Van Loan whitened by "
                        f"C = X^T X, damped by {DAMP:g} x its mean diagonal, then ALS on the exact objective. "
                        "Prints the errors on held-out calibration tokens (one sequence in 5) next to plain Van Loan's")
    p.add_argument('--calib_tokens', type=int, default=CALIB_TOKENS, metavar='N',
                   help=f'calibration tokens, held-out ones included (default {CALIB_TOKENS})')
    p.add_argument('--als_sweeps', type=int, default=ALS_SWEEPS,
                   help=f'--calib: most ALS sweeps after the closed form (default {ALS_SWEEPS}; 0: closed form only)')
    p.add_argument('--permute', action='store_true',
                   help="vl: reorder each MLP's hidden units (the same function) so the fit keeps more energy in "
                        "c_fc and c_proj together (reorder.py; with --calib on the whitened matrices); shapes "
                        "whose B factor does not group hidden units are left as they are")
    p.add_argument('--permute_rounds', type=int, default=ROUNDS,
                   help=f'--permute: swap rounds per step of the search (default {ROUNDS})')
    args = p.parse_args(argv)
    if (args.calib or args.permute) and args.init != 'vl':
        raise ValueError("--calib and --permute go with --init vl (the fits they change)")
    for flag, value, least in (('--calib_tokens', args.calib_tokens, 1), ('--als_sweeps', args.als_sweeps, 0),
                               ('--permute_rounds', args.permute_rounds, 1)):
        if value < least:
            raise ValueError(f"{flag} must be at least {least}, not {value}")
    if args.n_factors < 1:
        raise ValueError(f"N_FACTORS={args.n_factors} must be at least 1")
    if not math.isfinite(args.eps):
        raise ValueError(f"--eps must be a finite number, not {args.eps}")
    if args.init == 'random' and args.normalize:
        print("note: normalisation does not apply to --init random (a plain N(0, 0.02) baseline)")
    normalize = args.normalize and args.init != 'random'
    out = args.out or default_out(args.dim1, args.dim2, args.n_factors, args.init, normalize, args.scalers,
                                  bool(args.calib), args.permute)
    check_destination(out, args.force, inputs=[args.source, args.calib])  # before the model is loaded
    with output_lock(out):
        decompose(args, out, normalize)


def decompose(args, out, normalize):
    t0 = time.time()
    print(f"loading {args.source}", flush=True)  # a hub download or a large model takes a while
    dense, source_ckpt = load_model(args.source)
    dense.eval()
    check_finite(dense, args.source)
    config = kron_config(dense.config, args.dim1, args.dim2, args.n_factors, args.init, args.scalers)
    fc, proj = kron_shapes(config)
    print(f"{args.source}: {dense.config.n_layer} layers, n_embd {dense.config.n_embd}; "
          f"c_fc = {fc[0]} (x) {fc[1]}, c_proj = {proj[0]} (x) {proj[1]}, {args.n_factors} factor(s), "
          f"init {args.init}{', normalised' if normalize else ''}{', scalers' if args.scalers else ''}")
    grams, orders, report, calib_info = None, None, None, None
    if args.calib:
        grams = mlp_grams(dense, calib_ids(args.calib, dense, source_ckpt, args.source), args.calib_tokens)
        first = next(iter(grams.values()))
        calib_info = dict(source=args.calib, fit_tokens=first['fit_tokens'], held_tokens=first['held_tokens'],
                          damp=DAMP, als_sweeps=args.als_sweeps)
        print(f"calibration: C from {first['fit_tokens']:,} tokens of {args.calib} (damped by {DAMP:g} x its mean "
              f"diagonal), errors on {first['held_tokens']:,} held-out tokens")
    t1 = time.time()
    with torch.no_grad():
        if args.permute:
            orders, report = model_orders(dense, args.dim1, args.dim2, args.n_factors, grams, args.permute_rounds,
                                          seed=args.seed)
            print_orders(report, fc[1], bool(grams))
        model, stats = decompose_model(dense, args.dim1, args.dim2, args.n_factors, args.init, normalize,
                                       args.scalers, args.eps, args.seed, grams, args.als_sweeps, orders)
    t2 = time.time()

    print(f"{'matrix':<28} {'rel.err':>8} {'kept':>7} {'alpha':>7} {'rel.err stored':>15}")
    for s in stats:
        print(f"{s['layer']:<28} {s['rel_err']:8.4f} {s['kept']:7.4f} {s['alpha']:7.4f} {s['rel_err_final']:15.4f}")
    print_structure(model_structure(dense, args.dim1, args.dim2, args.n_factors))
    if grams is not None or orders is not None:
        print_comparison(stats, grams is not None)
    for count in ('paper', 'nanogpt'):
        print(f"parameters ({count} count): dense {dense.num_params(count):,} -> kron {model.num_params(count):,}")
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(config),
                     'vocab': stored_vocab(source_ckpt, args.source),
                     'decompose': dict(source=args.source, init=args.init, normalize=normalize,
                                       scalers=args.scalers, eps=args.eps, seed=args.seed, stats=stats,
                                       calib=calib_info, permute=report, orders=orders)}, out)
    print(f"loaded in {t1 - t0:.1f} s, decomposed {len(stats)} matrices in {t2 - t1:.1f} s; wrote {out}")


if __name__ == '__main__':
    errors.run(main)
