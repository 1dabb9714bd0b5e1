"""
The kinds of MLP matrix a GPT can use, one class each, chosen by GPTConfig.mlp.

    dense    nn.Linear
    kron     W = sum_f s_f A_f (x) B_f (Krony-PT), applied without building W
    lowrank  W = U @ V (a truncated SVD, or InRank's growing rank)

The Kronecker idea. A (m1, n1) and B (m2, n2) stand for the (m1 m2, n1 n2) matrix whose block
(i1, j1) is A[i1, j1] * B, that is kron(A, B)[i1*m2 + i2, j1*n2 + j2] = A[i1, j1] * B[i2, j2].
Multiplying by it never needs the big matrix: read each row of x as an (m1, m2) matrix X, and
x @ kron(A, B) is A^T X B read row by row:

    x (N, m1 m2) -> X (N, m1, m2) -> A^T X B (N, n1, n2) -> x @ kron(A, B) (N, n1 n2)

For `768 768 1` (the 81M model), c_fc has A (768, 768) and B (1, 4):

    x (N, 768) -> X (N, 768, 1) -> A^T X B (N, 768, 4) -> (N, 3072)

590k parameters instead of 2.4M, and a quarter of the dense multiply-adds. A sum of F products
(s_f learnable scalars, or 1) fits more of a trained matrix; kron_reference below is the plain
formula with torch.kron, the one reference every faster route is held to. KronLinear takes the
fastest of three routes to the same numbers (kron_fast.py, docs/kronecker_layer.md).

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

try:  # inside a factored Hugging Face export, which transformers imports as a package
    from .kron_fast import choose_path, fusable, fused_vector_mlp, kron_costs, kron_product
except ImportError:  # in this project
    from kron_fast import choose_path, fusable, fused_vector_mlp, kron_costs, kron_product

GELU_APPROXIMATE = 'tanh'  # GPT-2's "gelu_new"; MLP and the fused Kronecker MLP both use it


def kron_reference(A, B, scale=None):
    """W = sum_f s_f kron(A_f, B_f), the (m1 m2, n1 n2) matrix that A (F, m1, n1), B (F, m2, n2)
    and scale (F,) stand for (scale None: every s_f = 1), built plainly with torch.kron."""
    if scale is None:
        return sum(torch.kron(A[f], B[f]) for f in range(A.shape[0]))
    return sum(scale[f] * torch.kron(A[f], B[f]) for f in range(A.shape[0]))


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


@register('kron')
class KronLinear(MatrixKind):
    """y = x @ (sum_f s_f A_f (x) B_f) + bias, without building the dense W when that is cheaper:
    dense_weight is W, forward takes the cheapest of kron_fast's three paths to x @ W + bias.

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
        """The path forward takes for n_tokens rows (kron_fast.choose_path: fewest multiply-adds plus
        the cost of the memory it writes, on this layer's device kind), unless one is pinned."""
        if self.pinned_path is not None:
            return self.pinned_path
        return choose_path(self.shapes(), n_tokens, self.A.device.type, permuted_in, permuted_out)

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
        """True when self (c_fc) and nxt (c_proj) are computed as one MLP: B a row vector in c_fc
        and a column vector in c_proj (kron dim_1 = n_embd, as in the 81M model; kron_fast.fusable)
        and the cost model picking A first, then B first."""
        if not isinstance(nxt, KronLinear):
            return False
        return (fusable(self.shapes(), nxt.shapes())
                and self.path(n_tokens, permuted_out=True) == 'a_first'
                and nxt.path(n_tokens, permuted_in=True) == 'b_first')

    def fused_mlp(self, nxt, x):
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        if not self.fuses_with(nxt, x.shape[0]):
            return None
        y = fused_vector_mlp(x, (self.scaled_A(), self.B, self.bias), (nxt.scaled_A(), nxt.B, nxt.bias),
                             GELU_APPROXIMATE)
        return y.view(*lead, nxt.out_features)

    def forward(self, x, permuted_in=False, permuted_out=False):
        """x @ W + bias on the path the cost model picks; the same numbers as
        x @ kron_reference(A, B, scale) + bias up to rounding (tests/test_factored.py)."""
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features).contiguous()  # the paths view x
        path = self.path(x.shape[0], permuted_in, permuted_out)
        y = kron_product(x, self.scaled_A(), self.B, self.bias, path, permuted_in, permuted_out)
        return y.view(*lead, self.out_features)


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
