"""
GPT's output layer and the losses over its logits (next-token loss, distillation): the one place
that knows the CPU layout trick.

On CPU, MKL runs GPT-2's vocabulary product h @ W^T, with its odd 50,257 rows, markedly slower
than W @ h^T. lm_logits therefore computes W @ h^T there, a (vocab, B*T) array, and returns it as
a (B, T, vocab) view: ordinary logits to every caller (index, slice, softmax them as usual), only
their strides differ. The losses below reduce along the vocabulary whatever its stride, where
F.cross_entropy would copy a non-contiguous input first. Other devices use the plain product.
script/bench.py measures the effect (evaluation and training tables).
"""

import torch
from torch.nn import functional as F


def lm_logits(h, weight):
    """Logits (..., vocab) of hidden states h (..., n_embd) and the (vocab, n_embd) output weight."""
    if h.device.type != 'cpu':
        return F.linear(h, weight)
    lead, C = h.shape[:-1], h.shape[-1]
    out = weight @ h.reshape(-1, C).t()  # (vocab, B*T)
    return out.t().view(*lead, weight.shape[0])


class _TokenNLL(torch.autograd.Function):
    """token_nll with a hand-written backward: softmax(logits) - onehot(target) is made in one
    buffer of the logits' layout, where autograd's logsumexp and gather pass over five."""

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
    """-log softmax(logits)[target] at each position, (..., vocab) -> (...); 0 where the target is
    -1. bf16 / fp16 logits are reduced in fp32."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return _TokenNLL.apply(logits, targets)


def log_softmax(logits):
    """F.log_softmax over the vocabulary, also fast on lm_logits' CPU layout."""
    if logits.stride(-1) == 1:
        return F.log_softmax(logits, dim=-1)
    return logits - torch.logsumexp(logits, -1, keepdim=True)


def kd_kl(student_logits, teacher_logits, temperature):
    """Mean over positions of KL(softmax(teacher/T) || softmax(student/T)); logits (..., vocab)."""
    s = log_softmax(student_logits.float() / temperature)
    t = log_softmax(teacher_logits.float() / temperature)
    return (t.exp() * (t - s)).sum(-1).mean()


def cosine_loss(student_h, teacher_h):
    """Mean over positions of 1 - cos(h_student, h_teacher); hidden states (..., n_embd)."""
    return (1 - F.cosine_similarity(student_h.float(), teacher_h.float(), dim=-1)).mean()


def distill_loss(lm_loss, student, teacher, temperature, alpha_ce, alpha_clm, alpha_cos):
    """DistilGPT2's loss: alpha_clm * LM + alpha_ce * T^2 * KL(teacher_T || student_T) + alpha_cos *
    (1 - cos(h_student, h_teacher)), T the temperature; student and teacher are (logits, last hidden
    states). T^2 keeps the soft term's gradient scale independent of T (Hinton et al.)."""
    loss = alpha_clm * lm_loss
    if alpha_ce:
        loss = loss + alpha_ce * temperature ** 2 * kd_kl(student[0], teacher[0], temperature)
    if alpha_cos:
        loss = loss + alpha_cos * cosine_loss(student[1], teacher[1])
    return loss
