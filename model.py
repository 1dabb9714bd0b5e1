"""
One GPT-2 model whose MLP matrices are dense, Kronecker-factored (Krony-PT) or low-rank.

    from model import GPT, GPTConfig
    model = GPT.from_pretrained('gpt2')                      # hub name or save_pretrained dir
    model = GPT(GPTConfig(mlp='kron', kron_dim1=768, kron_dim2=768, kron_factors=1))
    model, ckpt = load_model('checks/kron_768_768_1_vl.pt')  # project checkpoint, hub name or dir

Everything uses the `x @ W` orientation of the paper's repository: c_fc's W is
(n_embd, 4*n_embd) and c_proj's W is (4*n_embd, n_embd). A Kronecker matrix is
W = sum_f s_f * A_f (x) B_f, with A_f (dim_1, dim_2) for c_fc and (dim_2, dim_1) for c_proj.
"""

import math
import os
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
from torch.nn import functional as F

MLP_KINDS = ('dense', 'kron', 'lowrank')
KRON_PATHS = ('dense', 'a_first', 'b_first')  # ways KronLinear can compute x @ W


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    layer_norm_epsilon: float = 1e-5
    mlp: str = 'dense'          # 'dense' | 'kron' | 'lowrank'
    kron_dim1: int = 0          # first factor of c_fc is (kron_dim1, kron_dim2)
    kron_dim2: int = 0
    kron_factors: int = 1       # number of Kronecker products summed per matrix
    kron_scalers: bool = False  # one learnable scalar per factor (paper section III-F)
    lowrank_rank: int = 0       # rank of U @ V; 0 means the InRank maximum min(in, out) // 2
    time_weighting: bool = False  # minGPT-tuned: distance-dependent attention weights
    time_mixing: bool = False     # minGPT-tuned: half the channels from the previous position
    time_mix_init: float = 0.0    # 0 = identity (pretrained weights unchanged), 1 = full shift

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp={self.mlp!r} is not one of {', '.join(MLP_KINDS)}")
        if self.mlp == 'kron':
            kron_shapes(self)  # raises with the valid divisors

    @property
    def mlp_width(self):
        return 4 * self.n_embd


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def kron_shapes(config):
    """((A shape, B shape) for c_fc, (A shape, B shape) for c_proj), checked against n_embd."""
    d1, d2, n, h = config.kron_dim1, config.kron_dim2, config.n_embd, config.mlp_width
    if d1 <= 0 or n % d1:
        raise ValueError(f"kron dim_1={d1} must divide n_embd={n}; valid: {divisors(n)}")
    if d2 <= 0 or h % d2:
        raise ValueError(f"kron dim_2={d2} must divide 4*n_embd={h}; valid: {divisors(h)}")
    bound = min(d1 * d2, (n // d1) * (h // d2))
    if not 1 <= config.kron_factors <= bound:
        raise ValueError(f"kron_factors={config.kron_factors} must be between 1 and {bound}, "
                         f"the rank bound of the rearranged {n}x{h} matrix for dims {d1} {d2}")
    fc = ((d1, d2), (n // d1, h // d2))
    proj = ((d2, d1), (h // d2, n // d1))
    return fc, proj


# -----------------------------------------------------------------------------
# the three kinds of MLP matrix; each maps (..., in) -> (..., out) and has .dense_weight()

class DenseLinear(nn.Linear):
    """nn.Linear that also reports its (in, out) matrix like the factored kinds."""

    def dense_weight(self):
        return self.weight.t()


def kron_costs(m1, n1, m2, n2, n_factors, n_tokens):
    """Multiply-adds of x @ sum_f A_f (x) B_f for each contraction path (A: m1 x n1, B: m2 x n2).
    For X the input reshaped to (N, m1, m2), the output is A^T X B (reference section on shapes)."""
    F_, N = n_factors, n_tokens
    return {
        'b_first': N * m1 * n2 * (m2 + n1) * F_,
        'a_first': N * n1 * m2 * (m1 + n2) * F_,
        'dense': m1 * n1 * m2 * n2 * F_ + N * m1 * m2 * n1 * n2,
    }


def kron_moves(m1, n1, m2, n2, n_factors, n_tokens, swap_in=False, swap_out=False):
    """Elements each path writes besides its output: the intermediate product, the built weight for
    'dense', and the transposes into and out of the B-major feature order the factored products
    read and write (KronLinear.forward). These passes are memory-bound, see MOVE_MACS."""
    F_, N = n_factors, n_tokens
    x_copy = 0 if swap_in or m2 == 1 else N * m1 * m2
    y_copy = 0 if swap_out or n2 == 1 else N * n1 * n2
    return {
        'b_first': N * n2 * F_ * m1 + y_copy,
        'a_first': N * m2 * F_ * n1 + x_copy + y_copy,
        'dense': m1 * n1 * m2 * n2,
    }


# multiply-adds that writing one element costs: a memory-bound pass runs at ~1-7 ns per element on
# a CPU, a large fp32 matmul at ~0.03-0.05 ns per multiply-add (script/bench.py); 32 is the low end,
# so the model only departs from the multiply-add count when a path moves much more memory
MOVE_MACS = 32


class KronLinear(nn.Module):
    """y = x @ (sum_f s_f A_f (x) B_f) + bias without building the dense weight when that is cheaper.

    Feature order: kron(A, B) numbers input features (i1, i2) and outputs (j1, j2), A's index first.
    Both factored paths naturally write (j2, j1), the B-major order, and a_first reads (i2, i1);
    forward(x, swap_in=True) / (swap_out=True) take / return features in B-major order, so that the
    MLP keeps its hidden layer that way and no transpose is ever made of it (GELU is elementwise).
    """

    def __init__(self, in_features, out_features, a_shape, n_factors=1, scalers=False, bias=True):
        super().__init__()
        m1, n1 = a_shape
        assert in_features % m1 == 0 and out_features % n1 == 0
        m2, n2 = in_features // m1, out_features // n1
        self.in_features, self.out_features = in_features, out_features
        self.A = nn.Parameter(torch.empty(n_factors, m1, n1))
        self.B = nn.Parameter(torch.empty(n_factors, m2, n2))
        self.scale = nn.Parameter(torch.ones(n_factors)) if scalers else None
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.normal_(self.A, std=0.02)
        nn.init.normal_(self.B, std=0.02)
        self.force_path = None  # tests and benchmarks pin a path; None lets the cost model choose

    def extra_repr(self):
        f, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        return f"A={f}x({m1},{n1}), B=({m2},{n2}), scalers={self.scale is not None}"

    def scaled_A(self):
        return self.A if self.scale is None else self.A * self.scale.view(-1, 1, 1)

    def dense_weight(self):
        f, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        # kron(A, B)[i1*m2 + i2, j1*n2 + j2] = A[i1, j1] * B[i2, j2]
        w = torch.einsum('fij,fkl->ikjl', self.scaled_A(), self.B)
        return w.reshape(m1 * m2, n1 * n2)

    def path(self, n_tokens, swap_in=False, swap_out=False):
        if self.force_path is not None:
            return self.force_path
        f, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        macs = kron_costs(m1, n1, m2, n2, f, n_tokens)
        moved = kron_moves(m1, n1, m2, n2, f, n_tokens, swap_in, swap_out)
        costs = {p: macs[p] + MOVE_MACS * moved[p] for p in KRON_PATHS}
        return min(costs, key=costs.get)

    def forward(self, x, swap_in=False, swap_out=False):
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features).contiguous()  # the paths below view x
        N = x.shape[0]
        f, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        path = self.path(N, swap_in, swap_out)
        A, B, bias = self.scaled_A(), self.B, self.bias
        # the bias in B-major order, (n2, n1)
        bias_t = None if bias is None else bias.view(n1, n2).t()
        if path == 'dense':
            # W built as (in, out): the sum over factors is one (rows, f) @ (f, cols) product (cheaper
            # than einsum's path, backward included), major factor first in the input order asked for;
            # the copy to (in, out) then moves blocks of the minor factor's columns, in the forward
            # and in its backward (building nn.Linear's (out, in) instead transposes everything)
            P, Q = (B, A) if swap_in else (A, B)
            w = (P.reshape(f, -1).t() @ Q.reshape(f, -1)).view(*P.shape[1:], *Q.shape[1:])
            w = w.permute(0, 2, 1, 3) if swap_in == swap_out else w.permute(0, 2, 3, 1)
            w = w.reshape(self.in_features, self.out_features)
            b = bias_t.reshape(-1) if swap_out and bias is not None else bias
            y = x @ w if b is None else torch.addmm(b, x, w)
            return y.view(*lead, self.out_features)
        if path == 'b_first':
            # t[n, j2, f, i1] = sum_i2 B_f[i2, j2] x[n, i1, i2]: a small matrix times each token's
            # (m2, m1) panel, the orientation in which the tiny product runs at memory speed
            xv = x.view(N, m2, m1) if swap_in else x.view(N, m1, m2).transpose(1, 2)
            bc = B.permute(2, 0, 1).reshape(n2 * f, m2)
            t = torch.bmm(bc.expand(N, n2 * f, m2), xv).view(N * n2, f * m1)
            # rows (n, j2), columns (f, i1): the large product is one contiguous matmul writing (N, n2, n1)
            a = A.reshape(f * m1, n1)
            if bias is None:
                y = t @ a
            elif n2 == 1:
                y = torch.addmm(bias, t, a)
            else:  # accumulate onto the tiled bias instead of adding it in another pass
                y = bias_t.expand(N, n2, n1).reshape(N * n2, n1).addmm_(t, a)
        elif path == 'a_first':
            # s[n, i2, f, j1] = sum_i1 x[n, i1, i2] A_f[i1, j1]; rows (n, i2) make it one contiguous
            # matmul over all factors (a copy of x only for input in kron order with m2 > 1)
            xt = x if swap_in or m2 == 1 else x.view(N, m1, m2).transpose(1, 2)
            s = xt.reshape(N * m2, m1) @ A.transpose(0, 1).reshape(m1, f * n1)
            # y[n] = B'^T (n2, m2*f) @ s[n] (m2*f, n1), bias fused, written as (N, n2, n1)
            bt = B.permute(2, 1, 0).reshape(n2, m2 * f).expand(N, n2, m2 * f)
            s = s.view(N, m2 * f, n1)
            y = torch.bmm(bt, s) if bias is None else torch.baddbmm(bias_t, bt, s)
        else:
            raise ValueError(f"unknown Kronecker path {path!r}; one of {KRON_PATHS}")
        if not swap_out and n2 > 1:
            y = y.view(N, n2, n1).transpose(1, 2)  # back to kron order: one copy of the output
        return y.reshape(*lead, self.out_features)


class LowRankLinear(nn.Module):
    """y = x @ U[:, :r] @ V[:r] + bias with U (in, rank), V (rank, out) and r = active_rank.

    A plain low-rank matrix uses all its ranks (r = rank). InRank's first stage (inrank.py)
    allocates the maximum rank once and grows r during training, so the parameters and the
    optimizer state never change shape; the ranks beyond r get exactly zero gradient and keep
    their initial values (up to weight decay) until they are switched on, as in InRank's repository.
    """

    def __init__(self, in_features, out_features, rank, bias=True):
        super().__init__()
        if not 1 <= rank <= min(in_features, out_features):
            raise ValueError(f"low rank {rank} must be between 1 and min(in, out) = "
                             f"{min(in_features, out_features)} for a {in_features}x{out_features} matrix")
        self.in_features, self.out_features = in_features, out_features
        # U like a GPT-2 weight; V's std 1/sqrt(rank) gives U @ V the std 0.02 of a dense init when
        # every rank is in use, and proportionally less while InRank uses only some of them
        self.U = nn.Parameter(torch.randn(in_features, rank) * 0.02)
        self.V = nn.Parameter(torch.randn(rank, out_features) / math.sqrt(rank))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        # the buffer persists r in checkpoints; the python int avoids a device sync per forward
        self.register_buffer('active_rank', torch.tensor(rank))
        self._active = rank

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

    def forward(self, x):
        U, V = self.factors()
        y = (x @ U) @ V
        return y if self.bias is None else y + self.bias


def lowrank_max_rank(in_features, out_features):
    """InRank's cap on the rank of an MLP matrix (its repository's max_rank)."""
    return min(in_features, out_features) // 2


# -----------------------------------------------------------------------------
# the transformer

class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout
        if config.time_mixing:
            # share of the previous position in the first half of the channels; 0 is the identity,
            # 1 is minGPT-tuned's shift of half the channels by one position
            self.time_mix = nn.Parameter(torch.full((config.n_embd // 2,), float(config.time_mix_init)))
        if config.time_weighting:
            # time_w[h, d] weighs a key d positions before the query (one circulant matrix per head,
            # block_size parameters instead of block_size^2); time_gamma[h, i] rescales query i,
            # which lets early tokens with few keys be weighted apart. Ones leave attention unchanged.
            self.time_w = nn.Parameter(torch.ones(config.n_head, config.block_size))
            self.time_gamma = nn.Parameter(torch.ones(config.n_head, config.block_size))

    def time_weights(self, T):
        """(n_head, T, T) factors that multiply the attention probabilities: w[h, i - j] * gamma[h, i]
        on and below the diagonal, zero above it."""
        pos = torch.arange(T, device=self.time_w.device)
        dist = pos.view(T, 1) - pos.view(1, T)  # (T, T), i - j
        causal = dist >= 0
        return self.time_w[:, dist.clamp(min=0)] * causal * self.time_gamma[:, :T, None]

    def shift_mix(self, x):
        """The first C/2 channels move towards their value one position earlier (zero before t=0)."""
        half = self.time_mix.shape[0]
        x1 = x[..., :half]
        prev = F.pad(x1, (0, 0, 1, -1))  # (B, T, C/2): position t holds x1 at t-1
        # lerp is exact at both ends: mix 0 returns x1 and mix 1 returns prev, bit for bit
        return torch.cat([torch.lerp(x1, prev, self.time_mix.to(x.dtype)), x[..., half:]], dim=-1)

    def forward(self, x):
        B, T, C = x.size()
        if hasattr(self, 'time_mix'):
            x = self.shift_mix(x)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if hasattr(self, 'time_w'):
            # the weights act after the softmax, so this path spells attention out (no fused kernel)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, T, T)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = F.softmax(att.masked_fill(~causal, float('-inf')), dim=-1)
            y = self.attn_dropout(att * self.time_weights(T).to(att.dtype)) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


def make_mlp_linear(config, in_features, out_features, which):
    if config.mlp == 'dense':
        return DenseLinear(in_features, out_features, bias=config.bias)
    if config.mlp == 'kron':
        fc, proj = kron_shapes(config)
        a_shape = (fc if which == 'fc' else proj)[0]
        return KronLinear(in_features, out_features, a_shape, config.kron_factors,
                          config.kron_scalers, bias=config.bias)
    rank = config.lowrank_rank or lowrank_max_rank(in_features, out_features)
    return LowRankLinear(in_features, out_features, rank, bias=config.bias)


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = make_mlp_linear(config, config.n_embd, config.mlp_width, 'fc')
        self.c_proj = make_mlp_linear(config, config.mlp_width, config.n_embd, 'proj')
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        if self.hidden_b_major(x.numel() // x.shape[-1]):
            # hidden features in B-major order (see KronLinear): never transposed, GELU doesn't mind
            h = F.gelu(self.c_fc(x, swap_out=True), approximate='tanh')
            return self.dropout(self.c_proj(h, swap_in=True))
        x = F.gelu(self.c_fc(x), approximate='tanh')  # GPT-2's "gelu_new"
        return self.dropout(self.c_proj(x))

    def hidden_b_major(self, n_tokens):
        """Whether forward keeps the hidden features in B-major order: when a factored product
        writes or reads them (two dense-path weights are cheapest to build in kron order)."""
        return (isinstance(self.c_fc, KronLinear) and isinstance(self.c_proj, KronLinear)
                and self.kron_paths(n_tokens) != ('dense', 'dense'))

    def kron_paths(self, n_tokens):
        """The paths c_fc and c_proj (KronLinear) take inside forward for n_tokens rows."""
        return self.c_fc.path(n_tokens, swap_out=True), self.c_proj.path(n_tokens, swap_in=True)


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _TokenNLL(torch.autograd.Function):
    """token_nll with a hand-written backward, softmax(logits) - onehot(target) made in one buffer
    of logits' layout (autograd's logsumexp and gather allocate and pass over five: a training
    step's loss 2442 -> 2049 ms with the vocabulary product, script/progress.md 2026-11-23)."""

    @staticmethod
    def forward(ctx, logits, targets):
        m = logits.amax(-1, keepdim=True)
        lse = torch.sub(logits, m).exp_().sum(-1).log_().add_(m.squeeze(-1))
        keep = targets != -1
        t = targets.clamp(min=0).unsqueeze(-1)
        ctx.save_for_backward(logits, lse, t, keep)
        return torch.where(keep, lse - logits.gather(-1, t).squeeze(-1), 0.0)

    @staticmethod
    def backward(ctx, g):
        logits, lse, t, keep = ctx.saved_tensors
        g = torch.where(keep, g, 0.0).unsqueeze(-1)
        grad = torch.sub(logits, lse.unsqueeze(-1)).exp_().mul_(g)  # softmax * g
        return grad.scatter_add_(-1, t, -g), None


def token_nll(logits, targets):
    """-log softmax(logits)[target] at each position, (..., vocab) -> (...); 0 where the target is -1.
    Works on any memory layout of logits (the reductions run along the vocabulary whatever its
    stride, where F.cross_entropy copies a non-contiguous input first; see GPT.head)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 / fp16 in fp32
    return _TokenNLL.apply(logits, targets)


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections (dense ones; factors keep N(0, 0.02))
        for name, p in self.named_parameters():
            if name.endswith('c_proj.weight'):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, count='paper'):
        """'paper': every parameter once (tied embedding once, positions included), as in the
        Krony-PT tables; 'nanogpt': the same without the position embeddings."""
        n = sum(p.numel() for p in self.parameters())
        if count == 'nanogpt':
            n -= self.transformer.wpe.weight.numel()
        elif count != 'paper':
            raise ValueError(f"count must be 'paper' or 'nanogpt', not {count!r}")
        return n

    def forward(self, idx, targets=None):
        """(logits (B, T, vocab), mean next-token loss or None); targets of -1 are not scored."""
        logits = self.head(self.hidden_states(idx))
        loss = None
        if targets is not None:
            loss = token_nll(logits, targets).sum() / (targets != -1).sum()
        return logits, loss

    def hidden_states(self, idx):
        """The final LayerNorm's output, (B, T, n_embd)."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.config.block_size}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.transformer.ln_f(x)

    def head(self, h):
        """Logits (B, T, vocab) of hidden states h (B, T, n_embd).

        On CPU they are computed as W @ h^T, (vocab, B*T) in memory, and returned as a (B, T, vocab)
        view: MKL runs GPT-2's product with its odd 50,257 rows ~1.5x faster that way than h @ W^T
        (script/progress.md, 2026-11-23); token_nll reads that layout at full speed."""
        if h.device.type != 'cpu':
            return self.lm_head(h)
        B, T, C = h.shape
        return (self.lm_head.weight @ h.reshape(B * T, C).t()).view(-1, B, T).permute(1, 2, 0)

    def mlp_linears(self):
        """(name, module) for the 2 * n_layer MLP matrices."""
        return [(f'transformer.h.{i}.mlp.{w}', getattr(b.mlp, w))
                for i, b in enumerate(self.transformer.h) for w in ('c_fc', 'c_proj')]

    def matmul_flops_per_token(self, n_tokens):
        """Forward multiply-adds * 2 per token of every weight matmul, with the path each
        Kronecker layer takes for n_tokens rows (attention scores excluded)."""
        c = self.config
        macs = c.n_layer * 4 * c.n_embd ** 2 + c.n_embd * c.vocab_size
        for block in self.transformer.h:
            mlp = block.mlp
            paths = mlp.kron_paths(n_tokens) if isinstance(mlp.c_fc, KronLinear) else (None, None)
            for lin, path in zip((mlp.c_fc, mlp.c_proj), paths):
                if isinstance(lin, KronLinear):
                    f, m1, n1 = lin.A.shape
                    _, m2, n2 = lin.B.shape
                    macs += kron_costs(m1, n1, m2, n2, f, n_tokens)[path] / n_tokens
                elif isinstance(lin, LowRankLinear):
                    macs += lin.rank * (lin.in_features + lin.out_features)
                else:
                    macs += lin.in_features * lin.out_features
        return 2 * macs

    def estimate_mfu(self, tokens_per_iter, dt, peak_flops=312e12):
        """Model flops utilisation: fwd + bwd = 3x forward flops, plus attention scores."""
        c = self.config
        per_token = 3 * self.matmul_flops_per_token(tokens_per_iter) + 12 * c.n_layer * c.n_embd * c.block_size
        return per_token * tokens_per_iter / dt / peak_flops

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type='cpu'):
        """AdamW; decay on tensors with 2+ dims (weights, embeddings, Kronecker factors),
        none on biases, LayerNorms and per-factor scalars."""
        # the attention tricks' time_* tensors are multipliers that start at one (or a mix that
        # starts at time_mix_init); decaying them towards zero would switch attention off
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        decay = [p for n, p in params.items() if p.dim() >= 2 and '.time_' not in n]
        no_decay = [p for n, p in params.items() if p.dim() < 2 or '.time_' in n]
        groups = [{'params': decay, 'weight_decay': weight_decay},
                  {'params': no_decay, 'weight_decay': 0.0}]
        # fused: one pass over each tensor instead of several (CPU too, since torch 2.4: a GPT-2 124M
        # step 480 -> 134 ms on 2 cores, script/progress.md 2026-11-23)
        fused = device_type in ('cuda', 'cpu')
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.config.block_size:]
            # only the last position's logits are needed: the vocabulary product for one token
            logits = self.head(self.hidden_states(idx_cond)[:, -1:])[:, -1]
            logits = logits / max(temperature, 1e-8)
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float('inf')
            probs = F.softmax(logits, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, 1, generator=generator)), dim=1)
        return idx

    @classmethod
    def from_pretrained(cls, name_or_dir, **overrides):
        """Dense GPT from any HF GPT-2-family model (hub name or a save_pretrained directory)."""
        from transformers import GPT2LMHeadModel  # heavy, and only needed here
        try:
            hf = GPT2LMHeadModel.from_pretrained(name_or_dir)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load a GPT-2 model from {name_or_dir!r}: {str(e).splitlines()[0]}") from None
        hc = hf.config
        if hc.n_inner not in (None, 4 * hc.n_embd):
            raise ValueError(f"{name_or_dir}: n_inner={hc.n_inner} is not 4*n_embd, which this model assumes")
        if hc.activation_function not in ('gelu_new', 'gelu_pytorch_tanh'):
            raise ValueError(f"{name_or_dir}: activation {hc.activation_function!r} is not GPT-2's gelu_new")
        args = dict(block_size=hc.n_positions, vocab_size=hc.vocab_size, n_layer=hc.n_layer,
                    n_head=hc.n_head, n_embd=hc.n_embd, layer_norm_epsilon=hc.layer_norm_epsilon,
                    dropout=0.0, bias=True)
        args.update(overrides)
        model = cls(GPTConfig(**args))
        sd = {k: v for k, v in hf.state_dict().items() if not k.endswith(('.attn.bias', '.attn.masked_bias'))}
        conv1d = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')
        sd = {k: (v.t() if k.endswith(conv1d) else v) for k, v in sd.items()}  # HF Conv1D is (in, out)
        sd.setdefault('lm_head.weight', sd['transformer.wte.weight'])
        # the attention tricks (overrides time_weighting / time_mixing) are not in GPT-2 and keep
        # their identity initialisation; every other weight must be there
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if '.attn.time_' not in k]
        if missing or unexpected:
            raise ValueError(f"{name_or_dir}: weights do not match GPT-2's layout "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model


# -----------------------------------------------------------------------------
# checkpoints: {'model': state_dict, 'model_args': GPTConfig fields, ...}, written atomically

def config_from_args(model_args):
    known = {f.name for f in fields(GPTConfig)}
    unknown = set(model_args) - known
    if unknown:
        raise ValueError(f"model_args has unknown keys {sorted(unknown)}; was it written by a newer version?")
    return GPTConfig(**model_args)


def save_checkpoint(obj, path):
    """torch.save to a temporary file in the same directory, then rename: a crash or a full disk
    never leaves a truncated checkpoint in place of the last good one."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path, map_location='cpu'):
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is not a readable torch file ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or 'model' not in ckpt or 'model_args' not in ckpt:
        raise ValueError(f"{path} is not a GPT checkpoint of this project (no 'model' and 'model_args')")
    return ckpt


def model_from_checkpoint(ckpt):
    model = GPT(config_from_args(ckpt['model_args']))
    # torch.compile prefixes parameter names with _orig_mod.
    sd = {k.removeprefix('_orig_mod.'): v for k, v in ckpt['model'].items()}
    model.load_state_dict(sd)
    return model


def load_model(spec, map_location='cpu'):
    """(model, checkpoint dict or None) from a project checkpoint file, an HF directory or a hub name."""
    if os.path.isfile(spec) or spec.endswith(('.pt', '.pth', '.ckpt')):
        ckpt = load_checkpoint(spec, map_location)
        try:
            return model_from_checkpoint(ckpt), ckpt
        except (RuntimeError, ValueError, TypeError) as e:
            raise ValueError(f"{spec}: weights do not match its model_args ({str(e).splitlines()[0]})") from None
    return GPT.from_pretrained(spec), None
