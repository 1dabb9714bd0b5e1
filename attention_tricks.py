"""
minGPT-tuned's attention tricks (BlinkDL/minGPT-tuned) as a variant of GPT-2's attention, chosen by
two GPTConfig fields ('' is off; model.attention_class picks this class when either is set):

    from model import GPT, GPTConfig
    GPT(GPTConfig(time_weighting='full', time_mixing='shift'))          # minGPT-tuned's model
    GPT(GPTConfig(time_weighting='toeplitz_query', time_mixing='learned'))  # this project's forms

time_weighting multiplies the attention probabilities, after the softmax and without
renormalising, by a learned (n_head, T, T) matrix W, all ones at the start (so attention is
unchanged at initialisation). Its forms, with parameters per layer for n_head H, block_size L:
  'full'            W[h] a free L x L matrix per head: minGPT-tuned's model (H L^2 parameters,
                    about half of them above the diagonal, where the probabilities are zero)
  'toeplitz'        W[h, i, j] = w[h, L-1-(i-j)] * b[h, j] for j <= i: the parameter-saving form
                    of minGPT-tuned's README, a Toeplitz matrix times a factor per key (2 H L)
  'toeplitz_query'  W[h, i, j] = w[h, i-j] * g[h, i]: this project's form, a factor per query
                    instead of per key (2 H L)
time_mixing replaces the first C/2 channels of the attention's input by their value one position
earlier (zero at the first position) before q, k and v are computed: 'shift' is minGPT-tuned's
fixed, parameter-free shift; 'learned' mixes the two with a learned share per channel, starting at
time_mix_init (0: the identity).

Weight decay follows each form's origin. minGPT-tuned's trainer decays every parameter whose name
does not contain 'bias', and its forms keep its names: 'full' (time_weighting) and the Toeplitz
entries of 'toeplitz' (time_weight) are decayed, the per-key factor of 'toeplitz' (time_bias) is
not. This project's forms (time_w, time_gamma, time_mix) are never decayed: they start at one or
at the identity, and decay would pull them towards switching attention off.

The parameters sit on the attention module itself (transformer.h.N.attn.time_*), which GPT-2's
attention never has: GPT.from_pretrained leaves them at their initialisation. No HF GPT-2 export
can hold them (krony_to_gpt.check_representable).
"""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

import model

TIME_WEIGHTINGS = ('', 'full', 'toeplitz', 'toeplitz_query')
TIME_MIXINGS = ('', 'shift', 'learned')
MINGPT_TUNED_NAMES = ('time_weighting', 'time_weight', 'time_bias')  # of 'full' and 'toeplitz'


class CausalSelfAttention(model.CausalSelfAttention):
    """GPT-2's attention with time weighting and / or time mixing (the module docstring)."""

    # minGPT-tuned's trainer exempts names containing 'bias'; this project's forms are all exempt
    NO_DECAY = tuple(n for n in MINGPT_TUNED_NAMES if 'bias' in n) + ('time_w', 'time_gamma', 'time_mix')

    @staticmethod
    def check_config(config):
        for name, forms in (('time_weighting', TIME_WEIGHTINGS), ('time_mixing', TIME_MIXINGS)):
            value = getattr(config, name)
            if value not in forms:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, forms))}")

    def __init__(self, config):
        super().__init__(config)
        self.time_mixing, self.weighting = config.time_mixing, config.time_weighting
        H, L = config.n_head, config.block_size
        if config.time_mixing == 'learned':
            self.time_mix = nn.Parameter(torch.full((config.n_embd // 2,), float(config.time_mix_init)))
        if self.weighting == 'full':
            self.time_weighting = nn.Parameter(torch.ones(H, L, L))
        elif self.weighting == 'toeplitz':
            self.time_weight = nn.Parameter(torch.ones(H, L))    # entry L-1-d weighs distance d
            self.time_bias = nn.Parameter(torch.ones(H, 1, L))   # one factor per key position
        elif self.weighting == 'toeplitz_query':
            self.time_w = nn.Parameter(torch.ones(H, L))         # entry d weighs distance d
            self.time_gamma = nn.Parameter(torch.ones(H, L))     # one factor per query position

    def time_weights(self, T):
        """(n_head, T, T) factors that multiply the attention probabilities (the module docstring);
        the Toeplitz forms are zero above the diagonal."""
        if self.weighting == 'full':
            return self.time_weighting[:, :T, :T]
        pos = torch.arange(T, device=self.c_attn.weight.device)
        dist = (pos.view(T, 1) - pos.view(1, T)).clamp(min=0)  # (T, T), i - j on and below the diagonal
        causal = torch.ones(T, T, dtype=torch.bool, device=dist.device).tril()
        if self.weighting == 'toeplitz':
            L = self.time_weight.shape[1]
            return self.time_weight[:, L - 1 - dist] * causal * self.time_bias[:, :, :T]
        return self.time_w[:, dist] * causal * self.time_gamma[:, :T, None]

    def time_shift(self, x):
        """The first C/2 channels from one position earlier (zero before t=0), fixed or mixed."""
        half = self.n_embd // 2
        x1 = x[..., :half]
        prev = F.pad(x1, (0, 0, 1, -1))  # (B, T, C/2): position t holds x1 at t-1
        if self.time_mixing == 'learned':
            # lerp is exact at both ends: mix 0 returns x1 and mix 1 returns prev, bit for bit
            prev = torch.lerp(x1, prev, self.time_mix.to(x.dtype))
        return torch.cat([prev, x[..., half:]], dim=-1)

    def forward(self, x, kv=None):
        if kv is not None:
            raise ValueError("the attention tricks need the whole context; run them without a KV cache")
        return super().forward(self.time_shift(x) if self.time_mixing else x)

    def attend(self, q, k, v, kv=None):
        if not self.weighting:
            return super().attend(q, k, v)
        # the weights act after the softmax, so attention is spelled out here (no fused kernel)
        T = q.size(2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        att = F.softmax(att.masked_fill(~causal, float('-inf')), dim=-1)
        return self.attn_dropout(att * self.time_weights(T).to(att.dtype)) @ v
