"""
One GPT-2 model whose MLP matrices are dense, Kronecker-factored (Krony-PT) or low-rank.

    from model import GPT, GPTConfig
    model = GPT(GPTConfig(mlp='kron', kron_dim1=768, kron_dim2=768, kron_factors=1))
    model = GPT.from_pretrained('gpt2')                      # hub name or save_pretrained dir
    # checkpoints, and "load whatever this argument names": checkpoint.py

Everything uses the `x @ W` orientation of the paper's repository: c_fc's W is
(n_embd, 4*n_embd) and c_proj's W is (4*n_embd, n_embd). The kinds of MLP matrix (dense, kron,
lowrank) live in factored.py; the output layer's CPU speed-up and the losses in losses.py.
"""

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn as nn
from torch.nn import functional as F

from factored import KINDS, MLP  # noqa: F401 (MLP: the blocks' MLP, imported from here too)
from losses import lm_logits, token_nll

# HF's GPT-2 stores these weights as Conv1D, (in, out); nn.Linear holds (out, in)
HF_CONV1D = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')


@dataclass
class GPTConfig:
    block_size: int = 1024      # positions (context length)
    vocab_size: int = 50257     # tokens; GPT-2's BPE has 50257
    n_layer: int = 12           # transformer blocks
    n_head: int = 12            # attention heads
    n_embd: int = 768           # width; the MLP is 4 * n_embd wide
    dropout: float = 0.0        # dropout on attention and residual branches (training only)
    bias: bool = True           # biases in Linear layers and LayerNorms, as GPT-2
    layer_norm_epsilon: float = 1e-5
    mlp: str = 'dense'          # kind of MLP matrix: 'dense' | 'kron' | 'lowrank' (factored.py)
    kron_dim1: int = 0          # kron: c_fc's first factor is (kron_dim1, kron_dim2)
    kron_dim2: int = 0
    kron_factors: int = 1       # kron: Kronecker products summed per matrix
    kron_scalers: bool = False  # kron: one learnable scalar per factor (paper section III-F)
    lowrank_rank: int = 0       # lowrank: rank of U @ V; 0 means InRank's maximum min(in, out) // 2
    lowrank_init: str = 'gpt2'  # lowrank: 'gpt2' (U ~ N(0, 0.02^2), V ~ N(0, 1/R)) | 'inrank' (InRank's kaiming-uniform)
    # minGPT-tuned's attention tricks (attention_tricks.py); '' is off
    time_weighting: str = ''    # weights on the attention probabilities: 'full' | 'toeplitz' | 'toeplitz_query'
    time_mixing: str = ''       # half the channels from the previous position: 'shift' (fixed) | 'learned'
    time_mix_init: float = 0.0  # time_mixing='learned': starting share, 0 = identity, 1 = the fixed shift

    def __post_init__(self):
        if (self.time_weighting, self.time_mixing) != ('', ''):  # minGPT-tuned's tricks are on
            attention_class(self).check_config(self)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.mlp not in KINDS:
            raise ValueError(f"mlp={self.mlp!r} is not one of {', '.join(KINDS)}")
        KINDS[self.mlp].check_config(self)

    @property
    def mlp_width(self):
        return 4 * self.n_embd


def with_mlp(config, mlp, **kind_fields):
    """config with another kind of MLP matrix: every kind's fields back to their defaults, then
    kind_fields set (e.g. with_mlp(c, 'kron', kron_dim1=768, kron_dim2=768))."""
    defaults = {f.name: f.default for f in fields(GPTConfig)}
    reset = {name: defaults[name] for kind in KINDS.values() for name in kind.CONFIG_FIELDS}
    return replace(config, **{**reset, **kind_fields}, mlp=mlp)


# -----------------------------------------------------------------------------
# the transformer

class CausalSelfAttention(nn.Module):
    """GPT-2's attention. Variants that change how positions are weighed or mixed subclass it
    (attention_tricks.py) and are chosen by attention_class(config)."""

    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x, kv=None):
        """kv: this layer's part of a KVCache, the keys and values of the positions before x's,
        extended here with x's own (x then holds only the new positions)."""
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = self.attend(q, k, v, kv)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def attend(self, q, k, v, kv=None):
        """(B, nh, T, hs): each query's softmax-weighted mean of the values at its position and
        before, the cached ones included."""
        T = q.size(2)
        past, mask = 0, None
        if kv is not None:
            if kv:
                past = kv[0].shape[2]
                k, v = torch.cat((kv[0], k), dim=2), torch.cat((kv[1], v), dim=2)  # (B, nh, past + T, hs)
            kv[:] = [k, v]
            if past and T > 1:  # new query i sees every cached key and the new keys up to itself
                mask = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(past)
        # one new query after cached keys sees all of them: no mask (SDPA's is_causal would align
        # the mask to the first key instead of the last)
        dropout_p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=past == 0)


def attention_class(config):
    """GPT-2's CausalSelfAttention, or minGPT-tuned's variant of it (attention_tricks.py) when
    config turns on one of its tricks (time_weighting, time_mixing)."""
    if config.time_weighting == config.time_mixing == '':
        return CausalSelfAttention
    import attention_tricks  # it subclasses CausalSelfAttention, so it loads after this module
    return attention_tricks.CausalSelfAttention


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = attention_class(config)(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, kv=None):
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp(self.ln_2(x))


class KVCache:
    """Every layer's attention keys and values of the positions seen so far, so that generating one
    more token runs the model on that token alone (GPT.generate)."""

    def __init__(self, n_layer):
        self.layers = [[] for _ in range(n_layer)]  # [k, v], each (B, nh, T, hs), once filled

    def __len__(self):
        return self.layers[0][0].shape[2] if self.layers and self.layers[0] else 0


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

    def mlp_params(self):
        """Parameters of the MLP matrices (biases excluded)."""
        return sum(lin.matrix_params() for _, lin in self.mlp_linears())

    def forward(self, idx, targets=None, return_hidden=False):
        """(logits (B, T, vocab), mean next-token loss or None); targets of -1 are not scored.
        return_hidden adds the last hidden states (B, T, n_embd) (for distillation)."""
        h = self.hidden_states(idx)
        logits = self.head(h)
        loss = None
        if targets is not None:
            loss = token_nll(logits, targets).sum() / (targets != -1).sum()
        return (logits, loss, h) if return_hidden else (logits, loss)

    def hidden_states(self, idx, cache=None):
        """The final LayerNorm's output, (B, T, n_embd); with a KVCache, idx continues the positions
        the cache holds, and their keys and values are added to it."""
        B, T = idx.shape
        start = len(cache) if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size={self.config.block_size}")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if cache is None else cache.layers[i])
        return self.transformer.ln_f(x)

    def head(self, h):
        """Logits (..., vocab) of hidden states h (..., n_embd); see losses.py for the CPU layout."""
        return lm_logits(h, self.lm_head.weight)

    def mlp_linears(self):
        """(name, module) for the 2 * n_layer MLP matrices."""
        return [(f'transformer.h.{i}.mlp.{w}', getattr(b.mlp, w))
                for i, b in enumerate(self.transformer.h) for w in ('c_fc', 'c_proj')]

    def matmul_flops_per_token(self, n_tokens):
        """Forward multiply-adds * 2 per token of every weight matmul, with the path each MLP
        matrix takes for n_tokens rows (attention scores excluded)."""
        c = self.config
        macs = c.n_layer * 4 * c.n_embd ** 2 + c.n_embd * c.vocab_size  # attention projections, lm_head
        macs += sum(block.mlp.macs(n_tokens) for block in self.transformer.h) / n_tokens
        return 2 * macs

    def estimate_mfu(self, tokens_per_iter, dt, peak_flops=312e12):
        """Model flops utilisation: fwd + bwd = 3x forward flops, plus attention scores."""
        c = self.config
        per_token = 3 * self.matmul_flops_per_token(tokens_per_iter) + 12 * c.n_layer * c.n_embd * c.block_size
        return per_token * tokens_per_iter / dt / peak_flops

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type='cpu'):
        """AdamW; decay on tensors with 2+ dims (weights, embeddings, Kronecker factors),
        none on biases, LayerNorms and per-factor scalars, nor on the parameters a module names in
        its NO_DECAY (the multipliers of attention_tricks.py)."""
        exempt = {id(p) for m in self.modules() for n, p in m.named_parameters(recurse=False)
                  if n in getattr(m, 'NO_DECAY', ())}
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        decay = [p for p in params.values() if p.dim() >= 2 and id(p) not in exempt]
        no_decay = [p for p in params.values() if p.dim() < 2 or id(p) in exempt]
        groups = [{'params': decay, 'weight_decay': weight_decay},
                  {'params': no_decay, 'weight_decay': 0.0}]
        # fused: one pass over each tensor instead of several (on CPU too, since torch 2.4)
        fused = device_type in ('cuda', 'cpu')
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, use_cache=True):
        """idx (B, T) followed by max_new_tokens sampled tokens. use_cache keeps a KVCache, so each
        step after the first runs the model on the newest token alone; minGPT-tuned's tricks change
        how earlier positions are mixed and always run on the whole context. Once the sequence
        outgrows block_size, each step runs on its last block_size tokens (positions restart), with
        or without the cache."""
        c = self.config
        use_cache = use_cache and attention_class(c) is CausalSelfAttention
        cache = None
        for _ in range(max_new_tokens):
            if cache is not None and idx.shape[1] <= c.block_size:
                h = self.hidden_states(idx[:, -1:], cache)
            else:
                cache = KVCache(c.n_layer) if use_cache else None
                h = self.hidden_states(idx[:, -c.block_size:], cache)
            # only the last position's logits are needed: the vocabulary product for one token
            logits = self.head(h[:, -1:])[:, -1]
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
        from transformers.utils import logging as hf_logging
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # no progress bars or load reports: a failure is one line
        hf_logging.disable_progress_bar()
        try:
            hf = GPT2LMHeadModel.from_pretrained(name_or_dir)
        except Exception as e:  # no such model, unreadable or mismatched files: one line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if 'mismatched_sizes' in msg:
                msg = "the weights' shapes do not match its config.json"
            raise ValueError(f"cannot load a GPT-2 model from {name_or_dir}: {msg}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
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
        sd = {k: (v.t() if k.endswith(HF_CONV1D) else v) for k, v in sd.items()}
        sd.setdefault('lm_head.weight', sd['transformer.wte.weight'])
        # GPT-2's attention holds its weights in c_attn and c_proj: parameters of the attention
        # module itself belong to a variant (attention_tricks.py) and keep their initialisation
        added = {f'{name}.{n}' for name, m in model.named_modules() if isinstance(m, CausalSelfAttention)
               for n, _ in m.named_parameters(recurse=False)}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k not in added]
        if missing or unexpected:
            raise ValueError(f"{name_or_dir}: weights do not match GPT-2's layout "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model


def convert_mlps(model, config, make):
    """A new GPT of `config` (another kind of MLP matrix, or the same) computing with model's
    weights: every parameter outside the MLP matrices is copied, MLP biases included; the matrix
    state of each new MLP layer is make(name, old_layer, new_layer) -> {tensor name: tensor}.
    Tied parameters (GPT-2's wte / lm_head) stay tied."""
    with torch.device('meta'):  # every tensor is assigned below: skip the random init
        new = GPT(config)
    matrices = {f'{name}.{k}' for name, lin in model.mlp_linears() for k in lin.state_dict() if k != 'bias'}
    copies, sd = {}, {}
    for k, v in model.state_dict(keep_vars=True).items():
        if k not in matrices:
            if id(v) not in copies:
                copies[id(v)] = nn.Parameter(v.detach().clone(), requires_grad=v.requires_grad)
            sd[k] = copies[id(v)]
    dtype = model.transformer.wte.weight.dtype
    for (name, old), (_, lin) in zip(model.mlp_linears(), new.mlp_linears()):
        for k, t in make(name, old, lin).items():
            t = t.detach().to(dtype if t.is_floating_point() else t.dtype).contiguous()
            sd[f'{name}.{k}'] = nn.Parameter(t, requires_grad=t.is_floating_point()) if k in dict(lin.named_parameters()) else t
    new.load_state_dict(sd, assign=True)  # strict: a missing tensor fails here
    if any(t.is_meta for t in new.state_dict().values()):
        raise ValueError("convert_mlps left a tensor unset; make() must return every matrix tensor")
    return new.train(model.training)
