"""
Activation-aware fits: what each MLP matrix of a dense teacher sees on training text, and the
Kronecker and low-rank factors that minimise the error on it instead of on the weights.

    from calib import calib_ids, mlp_grams, aware_kron, aware_lowrank, act_err
    ids = calib_ids('data/wikitext103_valid_char', model, ckpt, source)   # training tokens only
    grams = mlp_grams(model, ids, n_tokens=16384)   # {matrix: {'fit': C, 'held': C_held, ...}}
    A, B, info = aware_kron(W, a_shape, n_factors, grams[name]['fit'])

With y = x @ W, W (in, out), and X the (tokens, in) inputs a matrix receives, the error that
matters is ||X (W - W_hat)||_F^2 = tr((W - W_hat)^T C (W - W_hat)), C = X^T X. C is accumulated in
float64 over the calibration tokens; the fits use it damped by DAMP times its mean diagonal
(GPTQ's choice of 1%): it keeps C positive definite where some input direction is never seen and
pulls the fit a little towards plain Van Loan there. A share of the calibration sequences
(every HELD_EVERY-th) is held out of C; their own Gram matrix measures the error on activations
the fit has not seen.

Kronecker (W ~ sum_f A_f (x) B_f, A_f (m1, n1), B_f (m2, n2)):
  closed form  C ~ C1 (x) C2 (the nearest Kronecker product of C, C1 (m1, m1), C2 (m2, m2)),
               C1 = L1 L1^T, C2 = L2 L2^T; Van Loan on W~ = (L1^T (x) L2^T) W gives A~, B~ and
               A = L1^-T A~, B = L2^-T B~. Exact whenever C is a Kronecker product, e.g. for an
               input side with m2 = 1 (c_fc of the 81M shape).
  refinement   alternating least squares on the exact objective: with B fixed the objective is
               a convex quadratic in A whose columns share one (F m1)-sized system, and likewise
               for B; each half-step solves it exactly, so no sweep increases the objective.
Low rank: U V = L^-T truncate_r(L^T W), C = L L^T: the exact minimiser of ||X (W - U V)|| (its
error is the tail of L^T W's singular values, as in SVD-LLM's truncation-aware whitening).
"""

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from factored import GELU_APPROXIMATE

DAMP = 0.01            # damping of C: DAMP * mean(diag(C)) added to its diagonal
HELD_EVERY = 5         # every 5th calibration sequence is held out of C (20% of the tokens)
CALIB_TOKENS = 16384   # default number of calibration tokens (fit and held-out together)
ALS_SWEEPS = 50        # default ALS sweeps; they stop earlier once a sweep gains less than ALS_TOL
ALS_TOL = 1e-10        # ... relative to tr(W^T C W)
DATA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


# -----------------------------------------------------------------------------
# calibration activations

def calib_ids(spec, model, ckpt=None, source=None):
    """1-D int64 token ids of the training text `spec`: a prepared dataset (a directory or a name
    under data/) whose train.bin is read, a train.bin itself, or a UTF-8 text file encoded with the
    model's tokenizer (tokenizer.tokenizer_for). Validation and test splits are refused."""
    path = os.path.expanduser(spec)
    if not os.path.exists(path) and os.path.isfile(os.path.join(DATA_ROOT, spec, 'train.bin')):
        path = os.path.join(DATA_ROOT, spec)
    if os.path.isdir(path):
        path = os.path.join(path, 'train.bin')
        if not os.path.isfile(path):
            raise ValueError(f"--calib {spec}: a directory must hold a prepared train.bin (its training split)")
    if not os.path.isfile(path):
        raise ValueError(f"--calib {spec} does not exist (give a training text file, a dataset directory "
                         f"with train.bin, or a dataset name under data/)")
    if path.endswith('.bin'):
        if os.path.basename(path) != 'train.bin':
            raise ValueError(f"--calib {spec}: only a dataset's train.bin may calibrate (never validation or "
                             f"test data)")
        ids = torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64))
    else:
        from texts import read_text
        from tokenizer import tokenizer_for
        ids = torch.tensor(tokenizer_for(model, ckpt, source).encode(read_text(path)), dtype=torch.int64)
    if ids.numel() and int(ids.max()) >= model.config.vocab_size:
        raise ValueError(f"--calib {spec}: token id {int(ids.max())} is outside the model's vocabulary of "
                         f"{model.config.vocab_size} (text of another tokenizer?)")
    return ids


def calib_windows(ids, n_tokens, block_size):
    """(fit, held) LongTensors of sequences (n, T): ceil(n_tokens / T) windows of T = block_size
    tokens spread evenly over ids, every HELD_EVERY-th held out."""
    T = min(block_size, 1024)
    n_seq = math.ceil(n_tokens / T)
    if n_seq < HELD_EVERY:
        raise ValueError(f"--calib_tokens {n_tokens} gives {n_seq} sequences of {T} tokens; at least "
                         f"{HELD_EVERY * T} tokens are needed (one sequence in {HELD_EVERY} is held out)")
    if ids.numel() < n_seq * T:
        raise ValueError(f"the calibration text has {ids.numel():,} tokens, fewer than --calib_tokens asks for "
                         f"({n_seq * T:,} in sequences of {T}); give more text or a smaller --calib_tokens")
    starts = torch.linspace(0, ids.numel() - T, n_seq).long()
    seqs = torch.stack([ids[s:s + T] for s in starts.tolist()])
    held = torch.arange(n_seq) % HELD_EVERY == HELD_EVERY - 1
    return seqs[~held], seqs[held]


@torch.no_grad()
def mlp_grams(model, ids, n_tokens=CALIB_TOKENS, batch_size=8):
    """{matrix name: {'fit': C, 'held': C_held, 'fit_tokens': n, 'held_tokens': n}} for every MLP
    matrix of model (mlp_linears' names): C = X^T X in float64 over the fit sequences, C_held over
    the held-out ones, undamped. X is what the matrix receives: c_fc the block's ln_2 output (the
    MLP's input), c_proj the GELU of c_fc's output, computed from the MLP's own c_fc so the hidden
    order is the kron order whatever kind the matrix is."""
    fit, held = calib_windows(ids, n_tokens, model.config.block_size)
    names = dict((id(b.mlp), i) for i, b in enumerate(model.transformer.h))
    grams, role = {}, {}

    def add(name, x):
        x = x.reshape(-1, x.shape[-1]).double()
        g = grams.setdefault(name, {'fit': 0, 'held': 0, 'fit_tokens': 0, 'held_tokens': 0})
        g[role['now']] = g[role['now']] + x.T @ x
        g[role['now'] + '_tokens'] += x.shape[0]

    def hook(mlp, args):
        x = args[0]
        prefix = f"transformer.h.{names[id(mlp)]}.mlp"
        add(f"{prefix}.c_fc", x)
        add(f"{prefix}.c_proj", F.gelu(mlp.c_fc(x), approximate=GELU_APPROXIMATE))

    was_training = model.training
    model.eval()
    handles = [b.mlp.register_forward_pre_hook(hook) for b in model.transformer.h]
    try:
        for name, seqs in (('fit', fit), ('held', held)):
            role['now'] = name  # where the hooks add this batch
            for i in range(0, len(seqs), batch_size):
                model.hidden_states(seqs[i:i + batch_size].to(model.transformer.wte.weight.device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in g.items()} for name, g in grams.items()}


def damped(C, damp=DAMP):
    """C + damp * mean(diag(C)) * I (see the module docstring)."""
    return C + damp * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype)


def act_err(W, W_hat, C):
    """||X (W - W_hat)||_F / ||X W||_F for the X whose Gram matrix is C (no X needed)."""
    W, D = W.double(), W.double() - W_hat.double()
    return math.sqrt(max((D * (C @ D)).sum().item(), 0.0) / (W * (C @ W)).sum().item())


# -----------------------------------------------------------------------------
# activation-aware Kronecker fit

def _chol(C):
    """Lower Cholesky factor of a symmetric matrix meant to be positive definite; eigenvalues are
    floored at 1e-12 of the largest where rounding left it indefinite."""
    C = (C + C.T) / 2
    L, info = torch.linalg.cholesky_ex(C)
    if info == 0:
        return L
    w, Q = torch.linalg.eigh(C)
    return torch.linalg.cholesky((Q * w.clamp_min(1e-12 * w.max())) @ Q.T)


def kron_gram(C, m1):
    """(C1 (m1, m1), C2 (m2, m2)): the nearest Kronecker product C1 (x) C2 to C (Van Loan &
    Pitsianis); for a positive definite C both factors can be taken positive definite, and the
    sign is chosen so (the pair (-C1, -C2) is the same product)."""
    from kron_decompose import nearest_kron
    A, B, _ = nearest_kron(C, (m1, m1), 1)
    C1, C2 = A[0], B[0]
    if C1.trace() < 0:
        C1, C2 = -C1, -C2
    return (C1 + C1.T) / 2, (C2 + C2.T) / 2


def kron_whiten(W, C, m1):
    """(W~ = (L1^T (x) L2^T) W, L1, L2) for C1 (x) C2 = kron_gram(C, m1), C_i = L_i L_i^T: the
    matrix whose Frobenius error is W's error on activations with Gram matrix C1 (x) C2."""
    W = W.detach().double()
    M, N = W.shape
    C1, C2 = kron_gram(C.double(), m1)
    L1, L2 = _chol(C1), _chol(C2)
    Wt = torch.einsum('ia,jb,abn->ijn', L1.T, L2.T, W.view(m1, M // m1, N)).reshape(M, N)
    return Wt, L1, L2


def kron_closed_form(W, a_shape, n_factors, C):
    """(A, B): Van Loan on W whitened by the Cholesky factors of C's nearest Kronecker product
    (see the module docstring). Float64."""
    from kron_decompose import nearest_kron
    m1, n1 = a_shape
    Wt, L1, L2 = kron_whiten(W, C, m1)
    m2 = Wt.shape[0] // m1
    At, Bt, _ = nearest_kron(Wt, a_shape, n_factors)
    # A_f = L1^-T A~_f, B_f = L2^-T B~_f: (L1^T (x) L2^T)(A (x) B) = (L1^T A) (x) (L2^T B)
    A = torch.linalg.solve_triangular(L1.T, At.permute(1, 0, 2).reshape(m1, -1), upper=True)
    B = torch.linalg.solve_triangular(L2.T, Bt.permute(1, 0, 2).reshape(m2, -1), upper=True)
    A = A.view(m1, n_factors, n1).permute(1, 0, 2)
    B = B.view(m2, n_factors, -1).permute(1, 0, 2)
    return balanced(A, B)


def balanced(A, B):
    """The same products with ||A_f|| = ||B_f|| for every factor (as Van Loan's sqrt(sigma) split),
    so neither factor starts training at an odd scale."""
    a = A.flatten(1).norm(dim=1).clamp_min(1e-300)
    b = B.flatten(1).norm(dim=1).clamp_min(1e-300)
    s = (b / a).sqrt()
    # fresh row-major tensors: .contiguous() keeps odd strides on size-1 dimensions, which
    # torch.kron and later views trip over
    fresh = lambda t: t.reshape(-1).clone().view(t.shape)
    return fresh(A * s.view(-1, 1, 1)), fresh(B / s.view(-1, 1, 1))


class KronObjective:
    """f(A, B) = tr((W - W_hat)^T C (W - W_hat)) for W_hat = sum_f A_f (x) B_f, without building
    W_hat: with C4 = C viewed (m1, m2, m1, m2) and Y = C W viewed (m1, m2, n1, n2),
    f = tr(W^T C W) - 2 <Y, W_hat> + sum C4[a,b,c,d] (A A^T)[f,g,a,c] (B B^T)[f,g,b,d]."""

    def __init__(self, W, C, a_shape):
        m1, n1 = a_shape
        W, C = W.detach().double(), C.double()
        M, N = W.shape
        self.m1, self.n1, self.m2, self.n2 = m1, n1, M // m1, N // n1
        self.C4 = C.view(m1, self.m2, m1, self.m2)
        self.Y4 = (C @ W).view(m1, self.m2, n1, self.n2)
        self.wcw = (W * (C @ W)).sum().item()

    def __call__(self, A, B):
        AA = torch.einsum('fan,gcn->fgac', A, A)
        BB = torch.einsum('fbn,gdn->fgbd', B, B)
        quad = (torch.einsum('abcd,fgbd->fgac', self.C4, BB) * AA).sum()
        cross = torch.einsum('abjk,faj,fbk->', self.Y4, A, B)
        return self.wcw - 2 * cross + quad

    def solve_A(self, B):
        """The A minimising f for fixed B: G a_j = r_j for every column j of A, one shared system."""
        F_, m1 = B.shape[0], self.m1
        BB = torch.einsum('fbn,gdn->fgbd', B, B)
        G = torch.einsum('abcd,fgbd->fagc', self.C4, BB).reshape(F_ * m1, F_ * m1)
        r = torch.einsum('abjk,fbk->faj', self.Y4, B).reshape(F_ * m1, self.n1)
        return _spd_solve(G, r).view(F_, m1, self.n1)

    def solve_B(self, A):
        F_, m2 = A.shape[0], self.m2
        AA = torch.einsum('fan,gcn->fgac', A, A)
        G = torch.einsum('abcd,fgac->fbgd', self.C4, AA).reshape(F_ * m2, F_ * m2)
        r = torch.einsum('abjk,faj->fbk', self.Y4, A).reshape(F_ * m2, self.n2)
        return _spd_solve(G, r).view(F_, m2, self.n2)


def _spd_solve(G, r):
    """G^-1 r for a symmetric positive semi-definite G: Cholesky, or least squares where G is
    singular (factors that are linearly dependent), which still minimises the quadratic."""
    G = (G + G.T) / 2
    L, info = torch.linalg.cholesky_ex(G)
    if info == 0:
        return torch.cholesky_solve(r, L)
    return torch.linalg.lstsq(G, r, driver='gelsd').solution


def kron_als(W, A, B, C, sweeps=ALS_SWEEPS, tol=ALS_TOL):
    """(A, B, objective after each sweep): alternating least squares on f from the start (A, B)
    (KronObjective); stops after `sweeps` or once a sweep lowers f by less than tol * tr(W^T C W)."""
    obj = KronObjective(W, C, A.shape[1:])
    A, B = A.double(), B.double()
    history = [obj(A, B).item()]
    for _ in range(sweeps):
        A = obj.solve_A(B)
        B = obj.solve_B(A)
        history.append(obj(A, B).item())
        if history[-2] - history[-1] < tol * obj.wcw:
            break
    A, B = balanced(A, B)
    return A, B, history


def aware_kron(W, a_shape, n_factors, C, sweeps=ALS_SWEEPS):
    """(A, B, info): the closed form refined by ALS on the exact objective with C (already
    damped); info holds the relative error sqrt(f / tr(W^T C W)) of the closed form and after the
    sweeps, where the sweeps started and how many ran."""
    from kron_decompose import nearest_kron, one_thread
    obj = KronObjective(W, C, a_shape)
    A, B = kron_closed_form(W, a_shape, n_factors, C)
    closed = obj(A, B).item()
    # the sweeps start from whichever is better on the objective, the closed form or plain Van
    # Loan (the closed form is only exact for a Kronecker C), so the fit never ends worse than either
    A0, B0, _ = nearest_kron(W, a_shape, n_factors)
    start = 'closed form'
    if obj(A0, B0).item() < closed:
        A, B, start = A0, B0, 'van loan'
    with one_thread():  # small systems: on a loaded machine more threads only wait on each other
        A, B, history = kron_als(W, A, B, C, sweeps)
    rel = lambda f: math.sqrt(max(f, 0.0) / obj.wcw)
    return A, B, dict(closed_form=rel(closed), start=start, refined=rel(history[-1]), sweeps=len(history) - 1)


# -----------------------------------------------------------------------------
# activation-aware low rank

def aware_lowrank(W, rank, C):
    """(U (in, rank), V (rank, out)) minimising tr((W - U V)^T C (W - U V)) for C = L L^T (already
    damped): U V = L^-T truncate_rank(L^T W), each side scaled by sqrt(sigma) as compress.svd_factors."""
    W = W.detach().double()
    L = _chol(C.double())
    P, S, Qh = torch.linalg.svd(L.T @ W, full_matrices=False)
    root = S[:rank].sqrt()
    U = torch.linalg.solve_triangular(L.T, P[:, :rank] * root, upper=True)
    return U, root[:, None] * Qh[:rank]
