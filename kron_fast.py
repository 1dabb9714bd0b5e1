"""
How factored.KronLinear computes y = x @ W + b for W = sum_f s_f A_f (x) B_f fast: three ways
(paths) to compute it, a cost model that picks one, and a fused MLP for vector B factors. The
maths, and the plain reference every path equals, are in factored.py; the layout choices are
explained in docs/kronecker_layer.md. Nothing here holds parameters: every function takes the
factors as tensors (A already scaled by s_f, see KronLinear.scaled_A).

    KRON_PATHS                    'dense', 'a_first', 'b_first'
    kron_costs(m1, n1, m2, n2, n_factors, n_tokens)            multiply-adds of each path
    kron_moves(..., permuted_in, permuted_out)                  elements each path writes besides y
    MOVE_MACS                     multiply-adds one written element costs, per device kind
    choose_path(shapes, n_tokens, device_type, permuted_in, permuted_out)   the cheapest path
    kron_product(x, A, B, bias, path, permuted_in, permuted_out)            y on one path
    fusable(fc_shapes, proj_shapes)      True when an MLP's B factors are a row and a column vector
    fused_vector_mlp(x, fc, proj, approximate)   c_fc, GELU and c_proj of such an MLP in one piece
    transposed(x)                 (B, P, Q) -> contiguous (B, Q, P), contiguous gradient too

Feature order: kron(A, B) numbers input features (i1, i2) and outputs (j1, j2), A's index first.
Both factored paths naturally write the output as (j2, j1) and contracting A first naturally reads
(i2, i1): the "permuted" order, which permuted_in / permuted_out ask for.
"""

import torch
import torch.nn.functional as F

KRON_PATHS = ('dense', 'a_first', 'b_first')  # the ways KronLinear can compute x @ W


def kron_costs(m1, n1, m2, n2, n_factors, n_tokens):
    """Multiply-adds of x @ sum_f A_f (x) B_f on each path (A: m1 x n1, B: m2 x n2).
    With X the input reshaped to (N, m1, m2), the output is A^T X B: contracting B first costs
    N m1 n2 (m2 + n1), A first N n1 m2 (m1 + n2); 'dense' builds W, then one product."""
    F_, N = n_factors, n_tokens
    return {
        'b_first': N * m1 * n2 * (m2 + n1) * F_,
        'a_first': N * n1 * m2 * (m1 + n2) * F_,
        'dense': m1 * n1 * m2 * n2 * F_ + N * m1 * m2 * n1 * n2,
    }


def kron_moves(m1, n1, m2, n2, n_factors, n_tokens, permuted_in=False, permuted_out=False):
    """Elements each path writes besides its output: the intermediate product, the built weight
    for 'dense', and the copies of the input and output between kron's feature order and the
    permuted order the factored products read and write."""
    F_, N = n_factors, n_tokens
    x_copy = 0 if permuted_in or m2 == 1 else N * m1 * m2
    y_copy = 0 if permuted_out or n2 == 1 else N * n1 * n2
    return {
        'b_first': N * n2 * F_ * m1 + x_copy + y_copy,
        'a_first': N * m2 * F_ * n1 + x_copy + y_copy,
        'dense': m1 * n1 * m2 * n2,
    }


# Multiply-adds that writing one element costs, per device kind. A memory-bound pass runs at
# about 1-7 ns per element on a CPU and a large fp32 matmul at 0.03-0.05 ns per multiply-add; 32
# is the low end, so the choice departs from the multiply-add count only when a path moves much
# more memory. cuda's 32 is the CPU's number, not a measurement: script/gpu_check.py times every
# path on a GPU, reports how far each pick is from the fastest and which value would pick best.
# One fixed table keeps the choice deterministic: the same shapes always take the same path, so a
# resumed run is bit-exact.
MOVE_MACS = {'cpu': 32, 'cuda': 32}


def choose_path(shapes, n_tokens, device_type, permuted_in=False, permuted_out=False):
    """The path for n_tokens rows and shapes (n_factors, m1, n1, m2, n2): fewest multiply-adds
    plus MOVE_MACS per element moved, on device_type."""
    f, m1, n1, m2, n2 = shapes
    macs = kron_costs(m1, n1, m2, n2, f, n_tokens)
    moved = kron_moves(m1, n1, m2, n2, f, n_tokens, permuted_in, permuted_out)
    per_move = MOVE_MACS.get(device_type, MOVE_MACS['cpu'])
    costs = {p: macs[p] + per_move * moved[p] for p in KRON_PATHS}
    return min(costs, key=costs.get)


class _Transposed(torch.autograd.Function):
    """x.transpose(1, 2) as a contiguous copy whose gradient is a contiguous copy as well. Plain
    autograd would hand the gradient back as a strided view, and the batched products that consume
    it on the way back read such a view several times slower (80M-2's MLP step: 0.82x -> 0.75x of
    dense, script/bench.py --tables mlp)."""

    @staticmethod
    def forward(ctx, x):
        return x.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(1, 2).contiguous()


def transposed(x):
    """(B, P, Q) -> contiguous (B, Q, P); see _Transposed."""
    return _Transposed.apply(x)


# -----------------------------------------------------------------------------
# the three paths

def kron_product(x, A, B, bias, path, permuted_in=False, permuted_out=False):
    """y (N, n1 n2) = x @ sum_f A_f (x) B_f + bias on `path`, for contiguous x (N, m1 m2),
    A (f, m1, n1), B (f, m2, n2). permuted_in: x's features in the order (i2, i1);
    permuted_out: y's in the order (j2, j1) (the bias is given in kron order either way)."""
    if path == 'dense':
        return _dense_path(x, A, B, bias, permuted_in, permuted_out)
    N = x.shape[0]
    _, _, n1 = A.shape
    _, _, n2 = B.shape
    if path == 'b_first':
        y = _b_first(x, A, B, bias, permuted_in)
    elif path == 'a_first':
        y = _a_first(x, A, B, bias, permuted_in)
    else:
        raise ValueError(f"unknown Kronecker path {path!r}; one of {KRON_PATHS}")
    if not permuted_out and n2 > 1:
        y = transposed(y.view(N, n2, n1))  # back to kron order: one copy of the output
    return y.reshape(N, n1 * n2)


def _dense_path(x, A, B, bias, permuted_in, permuted_out):
    # W built as (in, out): the sum over factors is one (rows, f) @ (f, cols) product, the
    # major factor first in the input order asked for; the copy to (in, out) then moves
    # blocks of the minor factor's columns, forward and backward (building nn.Linear's
    # (out, in) would transpose everything instead)
    f, m1, n1 = A.shape
    _, m2, n2 = B.shape
    P, Q = (B, A) if permuted_in else (A, B)
    w = (P.reshape(f, -1).t() @ Q.reshape(f, -1)).view(*P.shape[1:], *Q.shape[1:])
    w = w.permute(0, 2, 1, 3) if permuted_in == permuted_out else w.permute(0, 2, 3, 1)
    w = w.reshape(m1 * m2, n1 * n2)
    b = bias.view(n1, n2).t().reshape(-1) if permuted_out and bias is not None else bias
    return x @ w if b is None else torch.addmm(b, x, w)


def _b_first(x, A, B, bias, permuted_in):
    """(N n2, n1) or (N, n2, n1): the output in permuted order."""
    N = x.shape[0]
    f, m1, n1 = A.shape
    _, m2, n2 = B.shape
    # t[n, j2, f, i1] = sum_i2 B_f[i2, j2] x[n, i1, i2]: a small matrix times each token's
    # (m2, m1) panel (input in kron order is copied to that layout first: reading it
    # strided costs more, forward and backward, than the copy)
    xv = x.view(N, m2, m1) if permuted_in or m2 == 1 else transposed(x.view(N, m1, m2))
    bc = B.permute(2, 0, 1).reshape(n2 * f, m2)
    t = torch.bmm(bc.expand(N, n2 * f, m2), xv).view(N * n2, f * m1)
    # rows (n, j2), columns (f, i1): the large product is one matmul writing (N, n2, n1)
    a = A.reshape(f * m1, n1)
    if bias is None:
        return t @ a
    if n2 == 1:
        return torch.addmm(bias, t, a)
    # accumulate onto the tiled bias instead of adding it in another pass; autocast does not
    # cast for an in-place op, so its operands take t's dtype as addmm's would. repeat always
    # copies (expand + reshape is a view of the bias itself for one token, which addmm_ would
    # then overwrite)
    bias_p = bias.view(n1, n2).t()  # the bias in permuted order, (n2, n1)
    return bias_p.to(t.dtype).repeat(N, 1).addmm_(t, a.to(t.dtype))


def _a_first(x, A, B, bias, permuted_in):
    """(N, n2, n1): the output in permuted order."""
    N = x.shape[0]
    f, m1, n1 = A.shape
    _, m2, n2 = B.shape
    # s[n, i2, f, j1] = sum_i1 x[n, i1, i2] A_f[i1, j1]; rows (n, i2) make it one matmul
    # over all factors (a copy of x only for input in kron order with m2 > 1)
    xt = x if permuted_in or m2 == 1 else transposed(x.view(N, m1, m2))
    s = xt.reshape(N * m2, m1) @ A.transpose(0, 1).reshape(m1, f * n1)
    # y[n] = B'^T (n2, m2*f) @ s[n] (m2*f, n1), bias fused, written as (N, n2, n1)
    bt = B.permute(2, 1, 0).reshape(n2, m2 * f).expand(N, n2, m2 * f)
    s = s.view(N, m2 * f, n1)
    return torch.bmm(bt, s) if bias is None else torch.baddbmm(bias.view(n1, n2).t(), bt, s)


# -----------------------------------------------------------------------------
# the fused MLP when B is a vector

def fusable(fc_shapes, proj_shapes):
    """True when c_fc's B is a row vector and c_proj's a column vector over the same hidden layer
    (kron dim_1 = n_embd, as in the 81M model): the 3,072-wide hidden layer is then the product of
    768-wide features with the short B vectors, so the MLP can compute it a few hundred rows at a
    time in cache, GELU included, and recompute it on the way back instead of storing it (see
    _VectorMiddle). Shapes as KronLinear.shapes: (n_factors, m1, n1, m2, n2)."""
    _, _, n1, m2, n2 = fc_shapes
    _, pm1, _, pm2, pn2 = proj_shapes
    return (m2, pn2) == (1, 1) and (pm1, pm2) == (n1, n2)


# Hidden-layer elements the fused MLP computes at a time on CPU (rows x 3,072 for the 81M model: 4
# MB, in the caches); on a GPU, which caches its memory, the whole batch at once.
VECTOR_MIDDLE_ELEMENTS = 1 << 20


def fused_vector_mlp(x, fc, proj, approximate):
    """c_proj(GELU(c_fc(x))) for fusable factors: x (N, n_embd), fc and proj (A, B, bias) with A
    scaled, GELU with `approximate`. The multiply-adds are those of A first in c_fc and B first
    in c_proj."""
    (A, B, fc_bias), (pA, pB, proj_bias) = fc, proj
    N = x.shape[0]
    f, n, d = A.shape  # c_fc: A (f, n_embd, d), B (f, 1, r); c_proj: A (f', d, n_embd), B (f', r, 1)
    r = B.shape[2]
    fp = pA.shape[0]
    s = x @ A.transpose(0, 1).reshape(n, f * d)  # c_fc's A product, columns (f, j1)
    b = B.permute(2, 1, 0).reshape(r, f)
    bias = None if fc_bias is None else fc_bias.view(d, r).t()  # c_fc's bias, (j2, j1)
    rows = N if x.device.type == 'cuda' else max(1, VECTOR_MIDDLE_ELEMENTS // (r * d))
    t = _VectorMiddle.apply(s.view(N, f, d), b, bias, pB.reshape(fp, r), rows, approximate)
    a = pA.reshape(fp * d, n)
    t = t.view(N, fp * d)
    return t @ a if proj_bias is None else torch.addmm(proj_bias, t, a)


class _VectorMiddle(torch.autograd.Function):
    """The middle of a Kronecker MLP whose B factors are vectors (fusable):

        h[n, k, j] = gelu(sum_f b[k, f] s[n, f, j] + bias[k, j])     k < r, the 3,072 = r x d hidden
        t[n, g, j] = sum_k c[g, k] h[n, k, j]

    with s = x @ A (c_fc's A product, (N, f, d)) and t what c_proj's A product reads. The hidden
    layer is built `rows` tokens at a time and never stored: backward recomputes it, which costs
    one GELU and two tiny products, far less than writing and re-reading it (and than the page
    faults of allocating 48 MB for it at 4,096 tokens, twice each way). Computes in s's dtype
    (under autocast, what the products of s gave) and accumulates the factor gradients in at least
    float32."""

    @staticmethod
    def hidden(s, b, bias):
        bb = b.expand(s.shape[0], *b.shape)
        return torch.bmm(bb, s) if bias is None else torch.baddbmm(bias, bb, s)

    @staticmethod
    def forward(ctx, s, b, bias, c, rows, approximate):
        N, _, d = s.shape
        b, c = b.to(s.dtype), c.to(s.dtype)
        bias = None if bias is None else bias.to(s.dtype)
        t = s.new_empty(N, c.shape[0], d)
        for i in range(0, N, rows):
            h = F.gelu(_VectorMiddle.hidden(s[i:i + rows], b, bias), approximate=approximate)
            torch.bmm(c.expand(h.shape[0], *c.shape), h, out=t[i:i + rows])
        ctx.save_for_backward(s, b, bias, c)
        ctx.rows, ctx.approximate = rows, approximate
        return t

    @staticmethod
    def backward(ctx, grad_t):
        s, b, bias, c = ctx.saved_tensors
        grad_t = grad_t.contiguous().to(s.dtype)
        acc = torch.promote_types(s.dtype, torch.float32)
        grad_s = torch.empty_like(s)
        grad_b = torch.zeros(b.shape, dtype=acc, device=s.device)
        grad_c = torch.zeros(c.shape, dtype=acc, device=s.device)
        grad_bias = None if bias is None else torch.zeros(bias.shape, dtype=acc, device=s.device)
        bT, cT = b.t(), c.t()
        for i in range(0, s.shape[0], ctx.rows):
            sc, gc = s[i:i + ctx.rows], grad_t[i:i + ctx.rows]
            R = sc.shape[0]
            pre = _VectorMiddle.hidden(sc, b, bias)
            h = F.gelu(pre, approximate=ctx.approximate)
            grad_c += torch.bmm(gc, h.transpose(1, 2)).sum(0)
            grad_pre = torch.ops.aten.gelu_backward(torch.bmm(cT.expand(R, *cT.shape), gc), pre,
                                                    approximate=ctx.approximate)
            if grad_bias is not None:
                grad_bias += grad_pre.sum(0)
            grad_b += torch.bmm(grad_pre, sc.transpose(1, 2)).sum(0)
            torch.bmm(bT.expand(R, *bT.shape), grad_pre, out=grad_s[i:i + R])
        return grad_s, grad_b, grad_bias, grad_c, None, None
