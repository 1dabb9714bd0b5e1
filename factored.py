"""
The kinds of MLP matrix a GPT can use, one class each, chosen by GPTConfig.mlp.

    dense    nn.Linear
    kron     sum_f s_f * A_f (x) B_f, computed without building the dense matrix (Krony-PT)
    lowrank  U @ V (a truncated SVD, or InRank's growing rank)

Every kind maps (..., in) -> (..., out) as x @ W + b and answers the same small interface, so that
model.py, the exporter, the compressor, the benchmark and the FLOP count never ask which kind it is:

    Kind.from_config(config, in_features, out_features, which)   which: 'fc' or 'proj'
    Kind.check_config(config)    raises ValueError for fields the kind cannot use
    Kind.CONFIG_FIELDS           the GPTConfig fields it reads (reset when a model changes kind)
    Kind.describe(config)        a short name for logs, e.g. 'kron 768 768 1'
    layer.dense_weight()         the (in, out) matrix W, which is what an HF export stores
    layer.macs(n_tokens)         multiply-adds of one forward over n_tokens rows
    layer.matrix_params()        parameters of the matrix (the bias excluded)
    layer.pair_layout(nxt, n)    keyword arguments for self and nxt when self writes the hidden
                                 layer that nxt reads (default: none)
    layer.fused_mlp(nxt, x)      the whole MLP (self, GELU, nxt) computed in one piece, or None
                                 to let the MLP run the three in turn (the default)

A new kind is one subclass registered with @register('name'), plus, if it is to be initialised
from trained weights, its initialiser (kron_decompose.py, compress.py).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

GELU_APPROXIMATE = 'tanh'  # GPT-2's "gelu_new"; MLP and the fused Kronecker MLP both use it

KINDS = {}  # name -> class


def register(name):
    def add(cls):
        cls.name = name
        KINDS[name] = cls
        return cls
    return add


class MatrixKind(nn.Module):
    """What every kind of MLP matrix answers (see the module docstring)."""

    CONFIG_FIELDS = ()

    @classmethod
    def from_config(cls, config, in_features, out_features, which):
        raise NotImplementedError

    @classmethod
    def check_config(cls, config):
        pass

    @classmethod
    def describe(cls, config):
        return cls.name

    def dense_weight(self):
        raise NotImplementedError

    def macs(self, n_tokens):
        raise NotImplementedError

    def matrix_params(self):
        return sum(p.numel() for n, p in self.named_parameters() if n != 'bias')

    def pair_layout(self, nxt, n_tokens):
        return {}, {}

    def fused_mlp(self, nxt, x):
        return None


@register('dense')
class DenseLinear(nn.Linear, MatrixKind):
    """nn.Linear (weight (out, in)), reporting its matrix like the factored kinds."""

    @classmethod
    def from_config(cls, config, in_features, out_features, which):
        return cls(in_features, out_features, bias=config.bias)

    def dense_weight(self):
        return self.weight.t()

    def macs(self, n_tokens):
        return n_tokens * self.in_features * self.out_features


# -----------------------------------------------------------------------------
# Kronecker products

def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def kron_rank_bound(m1, n1, m2, n2):
    """Most Kronecker products a sum can usefully hold for factors (m1, n1) and (m2, n2): the rank
    of the (m1 n1) x (m2 n2) rearrangement of the matrix (Van Loan & Pitsianis)."""
    return min(m1 * n1, m2 * n2)


def kron_shapes(config):
    """((A shape, B shape) for c_fc, (A shape, B shape) for c_proj), checked against n_embd."""
    d1, d2, n, h = config.kron_dim1, config.kron_dim2, config.n_embd, config.mlp_width
    if d1 <= 0 or n % d1:
        raise ValueError(f"kron dim_1={d1} must divide n_embd={n}; valid: {divisors(n)}")
    if d2 <= 0 or h % d2:
        raise ValueError(f"kron dim_2={d2} must divide 4*n_embd={h}; valid: {divisors(h)}")
    bound = kron_rank_bound(d1, d2, n // d1, h // d2)
    if not 1 <= config.kron_factors <= bound:
        raise ValueError(f"kron_factors={config.kron_factors} must be between 1 and {bound}, "
                         f"the rank bound of the rearranged {n}x{h} matrix for dims {d1} {d2}")
    fc = ((d1, d2), (n // d1, h // d2))
    proj = ((d2, d1), (h // d2, n // d1))
    return fc, proj


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
    permuted order the factored products read and write (see KronLinear)."""
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


@register('kron')
class KronLinear(MatrixKind):
    """y = x @ (sum_f s_f A_f (x) B_f) + bias, without building the dense W when that is cheaper.

    Feature order: kron(A, B) numbers input features (i1, i2) and outputs (j1, j2), A's index
    first. Both factored paths naturally write the output as (j2, j1) and contracting A first
    naturally reads (i2, i1): the "permuted" order. forward(x, permuted_in=True) takes its input
    in that order and forward(x, permuted_out=True) returns it so; the MLP hands its hidden layer
    from c_fc to c_proj that way (pair_layout), so the 3072-wide hidden layer is never transposed.
    """

    CONFIG_FIELDS = ('kron_dim1', 'kron_dim2', 'kron_factors', 'kron_scalers')

    def __init__(self, in_features, out_features, a_shape, n_factors=1, scalers=False, bias=True):
        super().__init__()
        m1, n1 = a_shape
        if in_features % m1 or out_features % n1:
            raise ValueError(f"first factor {tuple(a_shape)} does not tile a {in_features}x{out_features} matrix")
        m2, n2 = in_features // m1, out_features // n1
        self.in_features, self.out_features = in_features, out_features
        self.A = nn.Parameter(torch.empty(n_factors, m1, n1))
        self.B = nn.Parameter(torch.empty(n_factors, m2, n2))
        self.scale = nn.Parameter(torch.ones(n_factors)) if scalers else None
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.normal_(self.A, std=0.02)
        nn.init.normal_(self.B, std=0.02)
        self.pinned_path = None  # tests and benchmarks pin a path; None lets the cost model choose

    @classmethod
    def from_config(cls, config, in_features, out_features, which):
        fc, proj = kron_shapes(config)
        a_shape = (fc if which == 'fc' else proj)[0]
        return cls(in_features, out_features, a_shape, config.kron_factors, config.kron_scalers,
                   bias=config.bias)

    @classmethod
    def check_config(cls, config):
        kron_shapes(config)  # raises with the valid divisors

    @classmethod
    def describe(cls, config):
        c = config
        return f"kron {c.kron_dim1} {c.kron_dim2} {c.kron_factors}{' + scalers' if c.kron_scalers else ''}"

    def extra_repr(self):
        f, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        return f"A={f}x({m1},{n1}), B=({m2},{n2}), scalers={self.scale is not None}"

    def shapes(self):
        """(n_factors, m1, n1, m2, n2)."""
        f, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        return f, m1, n1, m2, n2

    def scaled_A(self):
        return self.A if self.scale is None else self.A * self.scale.view(-1, 1, 1)

    def dense_weight(self):
        f, m1, n1, m2, n2 = self.shapes()
        # kron(A, B)[i1*m2 + i2, j1*n2 + j2] = A[i1, j1] * B[i2, j2]
        w = torch.einsum('fij,fkl->ikjl', self.scaled_A(), self.B)
        return w.reshape(m1 * m2, n1 * n2)

    def path(self, n_tokens, permuted_in=False, permuted_out=False):
        """The path forward takes for n_tokens rows: fewest multiply-adds plus MOVE_MACS per
        element moved, on this layer's device kind."""
        if self.pinned_path is not None:
            return self.pinned_path
        f, m1, n1, m2, n2 = self.shapes()
        macs = kron_costs(m1, n1, m2, n2, f, n_tokens)
        moved = kron_moves(m1, n1, m2, n2, f, n_tokens, permuted_in, permuted_out)
        per_move = MOVE_MACS.get(self.A.device.type, MOVE_MACS['cpu'])
        costs = {p: macs[p] + per_move * moved[p] for p in KRON_PATHS}
        return min(costs, key=costs.get)

    def macs(self, n_tokens, permuted_in=False, permuted_out=False):
        f, m1, n1, m2, n2 = self.shapes()
        return kron_costs(m1, n1, m2, n2, f, n_tokens)[self.path(n_tokens, permuted_in, permuted_out)]

    def pair_layout(self, nxt, n_tokens):
        """Hand the hidden layer over in the permuted order when a factored product writes or
        reads it; two dense-path weights are cheapest to build in kron order."""
        if not isinstance(nxt, KronLinear):
            return {}, {}
        if (self.path(n_tokens, permuted_out=True), nxt.path(n_tokens, permuted_in=True)) == ('dense', 'dense'):
            return {}, {}
        return {'permuted_out': True}, {'permuted_in': True}

    def fuses_with(self, nxt, n_tokens):
        """True when self (c_fc) and nxt (c_proj) are computed as one MLP: when B is a row vector in
        c_fc and a column vector in c_proj (kron dim_1 = n_embd, as in the 81M model) and the cost
        model picks A first, then B first. The 3,072-wide hidden layer is then the product of
        768-wide features with the short B vectors, so the MLP can compute it a few hundred rows at
        a time in cache, GELU included, and recompute it on the way back instead of storing it
        (see _VectorMiddle)."""
        if not isinstance(nxt, KronLinear):
            return False
        _, _, n1, m2, n2 = self.shapes()
        _, pm1, _, pm2, pn2 = nxt.shapes()
        return ((m2, pn2) == (1, 1) and (pm1, pm2) == (n1, n2)
                and self.path(n_tokens, permuted_out=True) == 'a_first'
                and nxt.path(n_tokens, permuted_in=True) == 'b_first')

    def fused_mlp(self, nxt, x):
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        N = x.shape[0]
        if not self.fuses_with(nxt, N):
            return None
        f, n, d, _, r = self.shapes()  # c_fc: A (f, n_embd, d), B (f, 1, r); c_proj: A (f', d, n_embd), B (f', r, 1)
        fp = nxt.shapes()[0]
        s = x @ self.scaled_A().transpose(0, 1).reshape(n, f * d)  # c_fc's A product, columns (f, j1)
        b = self.B.permute(2, 1, 0).reshape(r, f)
        bias = None if self.bias is None else self.bias.view(d, r).t()  # c_fc's bias, (j2, j1)
        rows = N if x.device.type == 'cuda' else max(1, VECTOR_MIDDLE_ELEMENTS // (r * d))
        t = _VectorMiddle.apply(s.view(N, f, d), b, bias, nxt.B.reshape(fp, r), rows)
        a = nxt.scaled_A().reshape(fp * d, n)
        t = t.view(N, fp * d)
        y = t @ a if nxt.bias is None else torch.addmm(nxt.bias, t, a)
        return y.view(*lead, n)

    def forward(self, x, permuted_in=False, permuted_out=False):
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features).contiguous()  # the paths below view x
        N = x.shape[0]
        f, m1, n1, m2, n2 = self.shapes()
        path = self.path(N, permuted_in, permuted_out)
        A, B, bias = self.scaled_A(), self.B, self.bias
        bias_p = None if bias is None else bias.view(n1, n2).t()  # the bias in permuted order, (n2, n1)
        if path == 'dense':
            # W built as (in, out): the sum over factors is one (rows, f) @ (f, cols) product, the
            # major factor first in the input order asked for; the copy to (in, out) then moves
            # blocks of the minor factor's columns, forward and backward (building nn.Linear's
            # (out, in) would transpose everything instead)
            P, Q = (B, A) if permuted_in else (A, B)
            w = (P.reshape(f, -1).t() @ Q.reshape(f, -1)).view(*P.shape[1:], *Q.shape[1:])
            w = w.permute(0, 2, 1, 3) if permuted_in == permuted_out else w.permute(0, 2, 3, 1)
            w = w.reshape(self.in_features, self.out_features)
            b = bias_p.reshape(-1) if permuted_out and bias is not None else bias
            y = x @ w if b is None else torch.addmm(b, x, w)
            return y.view(*lead, self.out_features)
        if path == 'b_first':
            # t[n, j2, f, i1] = sum_i2 B_f[i2, j2] x[n, i1, i2]: a small matrix times each token's
            # (m2, m1) panel (input in kron order is copied to that layout first: reading it
            # strided costs more, forward and backward, than the copy)
            xv = x.view(N, m2, m1) if permuted_in or m2 == 1 else transposed(x.view(N, m1, m2))
            bc = B.permute(2, 0, 1).reshape(n2 * f, m2)
            t = torch.bmm(bc.expand(N, n2 * f, m2), xv).view(N * n2, f * m1)
            # rows (n, j2), columns (f, i1): the large product is one matmul writing (N, n2, n1)
            a = A.reshape(f * m1, n1)
            if bias is None:
                y = t @ a
            elif n2 == 1:
                y = torch.addmm(bias, t, a)
            else:  # accumulate onto the tiled bias instead of adding it in another pass; autocast
                # does not cast for an in-place op, so its operands take t's dtype as addmm's would.
                # repeat always copies (expand + reshape is a view of the bias itself for one token,
                # which addmm_ would then overwrite)
                y = bias_p.to(t.dtype).repeat(N, 1).addmm_(t, a.to(t.dtype))
        elif path == 'a_first':
            # s[n, i2, f, j1] = sum_i1 x[n, i1, i2] A_f[i1, j1]; rows (n, i2) make it one matmul
            # over all factors (a copy of x only for input in kron order with m2 > 1)
            xt = x if permuted_in or m2 == 1 else transposed(x.view(N, m1, m2))
            s = xt.reshape(N * m2, m1) @ A.transpose(0, 1).reshape(m1, f * n1)
            # y[n] = B'^T (n2, m2*f) @ s[n] (m2*f, n1), bias fused, written as (N, n2, n1)
            bt = B.permute(2, 1, 0).reshape(n2, m2 * f).expand(N, n2, m2 * f)
            s = s.view(N, m2 * f, n1)
            y = torch.bmm(bt, s) if bias is None else torch.baddbmm(bias_p, bt, s)
        else:
            raise ValueError(f"unknown Kronecker path {path!r}; one of {KRON_PATHS}")
        if not permuted_out and n2 > 1:
            y = transposed(y.view(N, n2, n1))  # back to kron order: one copy of the output
        return y.reshape(*lead, self.out_features)


# Hidden-layer elements the fused MLP computes at a time on CPU (rows x 3,072 for the 81M model: 4
# MB, in the caches); on a GPU, which caches its memory, the whole batch at once.
VECTOR_MIDDLE_ELEMENTS = 1 << 20


class _VectorMiddle(torch.autograd.Function):
    """The middle of a Kronecker MLP whose B factors are vectors (KronLinear.fuses_with):

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
    def forward(ctx, s, b, bias, c, rows):
        N, _, d = s.shape
        b, c = b.to(s.dtype), c.to(s.dtype)
        bias = None if bias is None else bias.to(s.dtype)
        t = s.new_empty(N, c.shape[0], d)
        for i in range(0, N, rows):
            h = F.gelu(_VectorMiddle.hidden(s[i:i + rows], b, bias), approximate=GELU_APPROXIMATE)
            torch.bmm(c.expand(h.shape[0], *c.shape), h, out=t[i:i + rows])
        ctx.save_for_backward(s, b, bias, c)
        ctx.rows = rows
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
            h = F.gelu(pre, approximate=GELU_APPROXIMATE)
            grad_c += torch.bmm(gc, h.transpose(1, 2)).sum(0)
            grad_pre = torch.ops.aten.gelu_backward(torch.bmm(cT.expand(R, *cT.shape), gc), pre,
                                                    approximate=GELU_APPROXIMATE)
            if grad_bias is not None:
                grad_bias += grad_pre.sum(0)
            grad_b += torch.bmm(grad_pre, sc.transpose(1, 2)).sum(0)
            torch.bmm(bT.expand(R, *bT.shape), grad_pre, out=grad_s[i:i + R])
        return grad_s, grad_b, grad_bias, grad_c, None


# -----------------------------------------------------------------------------
# the MLP

class MLP(nn.Module):
    """c_fc, GELU and c_proj, of the kind of matrix config.mlp names. model.py's blocks use it, and so
    does the Hugging Face model of a factored export (modeling_krony.py), which reads only the fields
    the kinds read plus n_embd, mlp_width, bias and dropout."""

    def __init__(self, config):
        super().__init__()
        kind = KINDS[config.mlp]
        self.c_fc = kind.from_config(config, config.n_embd, config.mlp_width, 'fc')
        self.c_proj = kind.from_config(config, config.mlp_width, config.n_embd, 'proj')
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        y = self.c_fc.fused_mlp(self.c_proj, x)  # a kind may compute the three steps as one
        if y is None:
            # a kind may hand the hidden features from c_fc to c_proj in an order of its own (GELU
            # is elementwise, so the MLP computes the same function)
            fc_args, proj_args = self.c_fc.pair_layout(self.c_proj, x.numel() // x.shape[-1])
            h = F.gelu(self.c_fc(x, **fc_args), approximate=GELU_APPROXIMATE)
            y = self.c_proj(h, **proj_args)
        return self.dropout(y)

    def macs(self, n_tokens):
        """Multiply-adds of both matrices for n_tokens rows, as forward computes them."""
        fc_args, proj_args = self.c_fc.pair_layout(self.c_proj, n_tokens)
        return self.c_fc.macs(n_tokens, **fc_args) + self.c_proj.macs(n_tokens, **proj_args)


# -----------------------------------------------------------------------------
# low rank

def lowrank_max_rank(in_features, out_features):
    """InRank's cap on the rank of an MLP matrix (its repository's max_rank)."""
    return min(in_features, out_features) // 2


@register('lowrank')
class LowRankLinear(MatrixKind):
    """y = x @ U[:, :r] @ V[:r] + bias with U (in, rank), V (rank, out) and r = active_rank.

    A plain low-rank matrix uses all its ranks (r = rank). InRank's first stage (inrank.py)
    allocates the maximum rank once and grows r during training, so the parameters and the
    optimizer state never change shape; the ranks beyond r get exactly zero gradient and keep
    their initial values (up to weight decay) until they are switched on, as in InRank's repository.
    """

    CONFIG_FIELDS = ('lowrank_rank', 'lowrank_init')
    INITS = ('gpt2', 'inrank')

    def __init__(self, in_features, out_features, rank, bias=True, init='gpt2'):
        super().__init__()
        if not 1 <= rank <= min(in_features, out_features):
            raise ValueError(f"low rank {rank} must be between 1 and min(in, out) = "
                             f"{min(in_features, out_features)} for a {in_features}x{out_features} matrix")
        if init not in self.INITS:
            raise ValueError(f"lowrank_init={init!r} is not one of {', '.join(self.INITS)}")
        self.in_features, self.out_features = in_features, out_features
        if init == 'gpt2':
            # U like a GPT-2 weight; V's std 1/sqrt(rank) gives U @ V the std 0.02 of a dense init
            # when every rank is in use, and proportionally less while InRank uses only some of them
            U = torch.randn(in_features, rank) * 0.02
            V = torch.randn(rank, out_features) / math.sqrt(rank)
        else:
            # InRank's: kaiming_uniform_(a=sqrt(5)) on its A (rank, in), then on its B (out, rank),
            # whose fan-ins are in and rank: U = A^T within 1/sqrt(in), V = B^T within 1/sqrt(rank)
            A, B = torch.empty(rank, in_features), torch.empty(out_features, rank)
            nn.init.kaiming_uniform_(A, a=math.sqrt(5))
            nn.init.kaiming_uniform_(B, a=math.sqrt(5))
            U, V = A.t().contiguous(), B.t().contiguous()
        self.U, self.V = nn.Parameter(U), nn.Parameter(V)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        # the buffer persists r in checkpoints; the python int avoids a device sync per forward
        self.register_buffer('active_rank', torch.tensor(rank))
        self._active = rank

    @classmethod
    def from_config(cls, config, in_features, out_features, which):
        rank = config.lowrank_rank or lowrank_max_rank(in_features, out_features)
        return cls(in_features, out_features, rank, bias=config.bias, init=config.lowrank_init)

    @classmethod
    def check_config(cls, config):
        if config.lowrank_rank < 0:
            raise ValueError(f"lowrank_rank={config.lowrank_rank} must be >= 0 (0: the maximum, min(in, out) // 2)")
        if config.lowrank_init not in cls.INITS:
            raise ValueError(f"lowrank_init={config.lowrank_init!r} is not one of {', '.join(cls.INITS)}")

    @classmethod
    def describe(cls, config):
        return f"low-rank {config.lowrank_rank or 'max'}"

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._active = int(self.active_rank)

    def set_active_rank(self, r):
        if not 1 <= r <= self.U.shape[1]:
            raise ValueError(f"active rank {r} must be between 1 and the allocated rank {self.U.shape[1]}")
        self.active_rank.fill_(r)
        self._active = r

    @property
    def rank(self):
        return self._active

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank} of {self.U.shape[1]}"

    def factors(self):
        """(U, V) restricted to the ranks in use: (in, r) and (r, out)."""
        r = self._active
        return self.U[:, :r], self.V[:r]

    def dense_weight(self):
        U, V = self.factors()
        return U @ V

    def macs(self, n_tokens):
        return n_tokens * self.rank * (self.in_features + self.out_features)

    def forward(self, x):
        U, V = self.factors()
        y = (x @ U) @ V
        return y if self.bias is None else y + self.bias
