"""
InRank (Zhao et al., "InRank: Incremental Low-Rank Learning", arXiv 2306.11250): train low-rank
MLP matrices W = U V from scratch while their rank grows, then truncate to the rank found and
train on at that fixed rank.

    # stage 1: from scratch, mlp='lowrank' at the maximum rank, ranks grow during training
    python train.py config/baselines/inrank_stage1.py
    # stage 2: SVD truncation to the rank found, Adam moments sliced, the same run continued
    python compress.py lowrank found --from checks/inrank_stage1/ckpt.pt --resume_dir checks/inrank_stage2
    python train.py config/baselines/inrank_stage2.py

Only the MLP's two matrices per block are factorised (attention stays dense), as in the paper.
The model allocates U (in, R) and V (R, out) at InRank's maximum rank R = min(in, out) // 2 and
uses the first r ranks (LowRankLinear.active_rank); growing r changes no tensor shape, so the
optimizer and its state need no rebuilding. The unused ranks get exactly zero gradient and keep
their random initial values (shrunk only by AdamW's decoupled weight decay) until they are switched
on, as in InRank's repository, which also slices preallocated factors. InRank's layer holds
A (R, in) and B (out, R) and computes x A^T B^T, so U = A^T and V = B^T.

The rank rule, per matrix, with InRank's names (defaults for GPT-2: init_modes 2, buffer_modes
100, explained_ratio_threshold 0.9, warmup_iter 200, gap_iter 25):
- `current` modes start at init_modes; the matrix uses r = current + buffer_modes ranks.
- when to check (Schedule): InRank's layer counts its own forward calls, every one of them:
  training micro-batches, validation batches (Lightning's two start-up "sanity" batches too) and
  test batches; it increments the count at the start of a forward and checks when
  count > warmup_iter and count % gap_iter == 0, before computing that forward, so the check sees
  the weights after the previous optimizer step and the new rank already serves that forward.
  unit='forward' reproduces this (train.py counts each training micro-batch and each evaluation
  batch of the process); unit='step' counts optimizer steps instead and checks after the step.
  InRank's GPT-2 run has 8 processes with 8 micro-batches each per step: 2 start-up batches, then
  warmup 200 and gap 25 forward calls put the first check inside optimizer step 28 (after 27
  steps), then one every 25 / 8 steps, 33 checks in its 130-step stage 1.
- s = the singular values of the current product U[:, :r] V[:r], all min(in, out) of them, so the
  entries beyond r are zero.
- explained(k) = 1 - var(s with its first k entries set to zero) / var(s), in float32 as InRank
  computes it. The vector keeps its length: the leading entries are zeroed, not removed (taking
  the variance of the shorter vector s[k:] gives different numbers because the zeros beyond r and
  the mean change). With equal lengths torch.var's unbiased correction cancels in the ratio.
- the new `current` is the first k in [current, min(current + buffer, R - buffer)) with
  explained(k) > threshold, or the last k of that range if none passes; so the rank never
  shrinks, grows by less than buffer_modes per check and r = current + buffer never exceeds R.
  The comparison is InRank's float32 one: a ratio equal to float32(threshold) (0.8 and 0.99 are
  not exact in float32) does not pass. An empty range (buffer_modes = 0, or current already at
  R - buffer) keeps `current`, where InRank's loop would fail on an undefined index.
- stage 2 keeps `current` ranks per matrix (the buffer is dropped). This toolkit's low-rank
  config has one rank for every matrix, so compress.py uses the largest `current` over the
  matrices (InRank's code keeps one rank per matrix).
Differences from InRank's code: the singular values come from the small factors (QR of U and V,
then the r x r core) instead of the full product, which gives the same values up to rounding;
and the product is formed in float32, where InRank's 16-bit GPT-2 small run forms it under
autocast (a float16 product, then a float32 SVD).
"""

import torch

from factored import LowRankLinear

UNITS = ('forward', 'step')


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
    """InRank's explained ratio of the leading k singular values (see the module docstring), a
    float32 value."""
    tail = s.float().clone()
    tail[:k] = 0
    return (1 - torch.var(tail) / torch.var(s.float())).item()


def passes(ratio, threshold):
    """ratio > threshold compared in float32, as InRank compares its float32 ratio with a python
    float: the threshold is rounded to float32 first."""
    return bool(torch.tensor(ratio, dtype=torch.float32) > threshold)


def next_modes(s, current, buffer_modes, max_rank, threshold):
    """InRank's new `current` for singular values s: never below current, below current + buffer."""
    k = current
    for k in range(current, min(current + buffer_modes, max_rank - buffer_modes)):
        if passes(explained_ratio(s, k), threshold):
            break
    return k


class Schedule:
    """When the ranks are checked: counts `unit` events ('forward': forward calls of this process,
    'step': optimizer steps) and says when a check is due, as InRank's layer counts (see the
    module docstring). `count` is part of a run's state (train.py saves and resumes it)."""

    def __init__(self, unit, warmup_iter, gap_iter, count=0):
        if unit not in UNITS:
            raise ValueError(f"inrank_unit={unit!r} is not one of {', '.join(UNITS)}")
        if warmup_iter < 0 or gap_iter < 1:
            raise ValueError(f"inrank_warmup_iter={warmup_iter} must be >= 0 and inrank_gap_iter={gap_iter} >= 1")
        self.unit, self.warmup_iter, self.gap_iter, self.count = unit, warmup_iter, gap_iter, count

    def advance(self, event):
        """Count one event of kind `event` ('forward' or 'step'); True when a check is due now."""
        if event != self.unit:
            return False
        self.count += 1
        return self.count > self.warmup_iter and self.count % self.gap_iter == 0


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


def check(model, threshold, buffer_modes):
    """One rank check of every low-rank matrix on its current weights; returns
    [(name, old rank, new rank)] for the matrices whose rank grew."""
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


def slice_moments(state, factor_of, rank):
    """InRank's stage-2 optimizer state from stage 1's: the Adam moments of every U (in, R) keep
    their first `rank` columns and those of every V (R, out) their first `rank` rows; everything
    else, the step counts included, is kept as it is. state: an optimizer state_dict()['state']
    ({index: {'step', 'exp_avg', 'exp_avg_sq'}}); factor_of: {index: 'U' or 'V'} for the indices
    of the low-rank factors.

    This is what InRank does after its SVD truncation, although the truncated factors live in the
    SVD's basis and the moments in the old factors' basis: the kept moments belong to the old
    first `rank` ranks, not to the new factors' coordinates (Adam's elementwise second moments
    have no exact counterpart in a rotated basis)."""
    cuts = {'U': (slice(None), slice(0, rank)), 'V': (slice(0, rank), slice(None))}
    out = {}
    for idx, st in state.items():
        cut = cuts.get(factor_of.get(idx))
        out[idx] = {k: (v[cut].clone() if cut and torch.is_tensor(v) and v.dim() == 2 else v) for k, v in st.items()}
    return out
