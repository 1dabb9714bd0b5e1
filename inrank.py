"""
InRank (Zhao et al., "InRank: Incremental Low-Rank Learning", arXiv 2306.11250): train low-rank
MLP matrices W = U V from scratch while their rank grows, then truncate to the rank found and
train on at that fixed rank.

    # stage 1: from scratch, mlp='lowrank' at the maximum rank, ranks grow during training
    python train.py config/inrank_stage1.py
    # stage 2: SVD truncation of every MLP matrix to the rank found, then a fixed-rank run
    python compress.py lowrank found --from checks/inrank_stage1/ckpt.pt --out checks/inrank_stage2.pt
    python train.py config/inrank_stage2.py

Only the MLP's two matrices per block are factorised (attention stays dense), as in the paper.
The model allocates U (in, R) and V (R, out) at InRank's maximum rank R = min(in, out) // 2 and
uses the first r ranks (LowRankLinear.active_rank); growing r changes no tensor shape, so the
optimizer and its state need no rebuilding. The unused ranks get exactly zero gradient and keep
their random initial values (shrunk only by AdamW's decoupled weight decay) until they are switched
on, as in InRank's repository, which also slices preallocated factors.

The rank rule, per matrix, with InRank's names (defaults for GPT-2: init_modes 2, buffer_modes
100, explained_ratio_threshold 0.9, warmup_iter 200, gap_iter 25):
- `current` modes start at init_modes; the matrix uses r = current + buffer_modes ranks.
- after warmup_iter optimizer steps, every gap_iter steps: s = the singular values of the current
  product U[:, :r] V[:r], all min(in, out) of them, so the entries beyond r are zero.
- explained(k) = 1 - var(s with its first k entries set to zero) / var(s). The vector keeps its
  length: the leading entries are zeroed, not removed (this is what InRank's code computes; taking
  the variance of the shorter vector s[k:] gives different numbers because the zeros beyond r and
  the mean change). With equal lengths torch.var's unbiased correction cancels in the ratio.
- the new `current` is the first k in [current, min(current + buffer, R - buffer)) with
  explained(k) > threshold, or the last k of that range if none passes; so the rank never
  shrinks, grows by less than buffer_modes per check and r = current + buffer never exceeds R.
- stage 2 keeps `current` ranks per matrix (the buffer is dropped). This toolkit's low-rank
  config has one rank for every matrix, so compress.py uses the largest `current` over the
  matrices (InRank's code keeps one rank per matrix).
Differences from InRank's code: the check counts optimizer steps (its counter counts forward
calls, evaluation and gradient-accumulation micro-steps included), and the singular values come
from the small factors (QR of U and V, then the r x r core) instead of the full product; both
give the same values up to rounding.
"""

import torch

from factored import LowRankLinear


def lowrank_layers(model):
    """(name, LowRankLinear) for every low-rank matrix of the model (the MLPs in a GPT)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LowRankLinear)]
    if not layers:
        raise ValueError("InRank needs a model with low-rank MLPs (mlp='lowrank'); this one has none")
    return layers


@torch.no_grad()
def singular_values(lin):
    """All min(in, out) singular values of U[:, :r] @ V[:r], descending (zeros beyond r)."""
    U, V = lin.factors()
    _, Ru = torch.linalg.qr(U.float())        # U = Qu Ru, Ru (r, r)
    _, Rv = torch.linalg.qr(V.float().t())    # V^T = Qv Rv, so U V = Qu (Ru Rv^T) Qv^T
    s = torch.linalg.svdvals(Ru @ Rv.t())
    return torch.cat([s, s.new_zeros(min(lin.in_features, lin.out_features) - s.numel())])


def explained_ratio(s, k):
    """InRank's explained ratio of the leading k singular values (see the module docstring)."""
    tail = s.clone()
    tail[:k] = 0
    return (1 - torch.var(tail) / torch.var(s)).item()


def next_modes(s, current, buffer_modes, max_rank, threshold):
    """InRank's new `current` for singular values s: never below current, below current + buffer."""
    k = current
    for k in range(current, min(current + buffer_modes, max_rank - buffer_modes)):
        if explained_ratio(s, k) > threshold:
            break
    return k


def start(model, init_modes, buffer_modes):
    """Stage 1's starting rank init_modes + buffer_modes in every low-rank MLP matrix."""
    if init_modes < 1 or buffer_modes < 0:
        raise ValueError(f"inrank_init_modes={init_modes} must be >= 1 and inrank_buffer_modes={buffer_modes} >= 0")
    for name, lin in lowrank_layers(model):
        R = lin.U.shape[1]
        if init_modes + buffer_modes > R:
            raise ValueError(f"{name}: init_modes + buffer_modes = {init_modes + buffer_modes} is more than "
                             f"its {R} allocated ranks; lower them or allocate more (lowrank_rank=0 is the maximum)")
        lin.set_active_rank(init_modes + buffer_modes)


def update(model, step, warmup_iter, gap_iter, threshold, buffer_modes):
    """Call after optimizer step number `step` (1-based). Grows the ranks on check steps and returns
    [(name, old rank, new rank)] for the matrices whose rank changed."""
    if step <= warmup_iter or step % gap_iter:
        return []
    changes = []
    for name, lin in lowrank_layers(model):
        R = lin.U.shape[1]
        current = lin.rank - buffer_modes
        if current >= R - buffer_modes:  # already at the largest rank the rule allows
            continue
        new = next_modes(singular_values(lin), current, buffer_modes, R, threshold)
        if new != current:
            lin.set_active_rank(new + buffer_modes)
            changes.append((name, current + buffer_modes, new + buffer_modes))
    return changes


def ranks_found(model, buffer_modes):
    """{name: current modes} = the rank each matrix keeps in stage 2 (active rank minus the buffer)."""
    return {name: lin.rank - buffer_modes for name, lin in lowrank_layers(model)}
