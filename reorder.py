"""
The free reordering of an MLP's hidden units: permuting c_fc's output columns (and its bias) and
c_proj's input rows alike leaves the model's function unchanged, but a Kronecker fit depends on
the order wherever its second factor groups hidden units. Used by kron_decompose.py --permute.

    from reorder import model_orders, permute_hidden
    orders, report = model_orders(dense, 768, 768, 1)      # {layer: order}, energies before/after
    dense = permute_hidden(dense, orders)                   # the same logits, a better-fitting order

With c_fc = A (x) B, A (d1, d2), B (n/d1, H/d2), hidden unit j is j1 * g + j2 with g = H/d2: units
come in groups of g consecutive ones (j1 fixed), the same in c_proj (A (d2, d1), B (g, n/d1)). Give
each unit u a panel P_u (d1, n/d1): its c_fc column, or its c_proj row, reshaped. A group j stacks
its units' panels into X_j (d1, g * n/d1), and Van Loan's rearrangement of the matrix is all the
X_j stacked (rows and columns permuted), so the energy the fit keeps, sum of the F largest
sigma^2, is the sum of the F largest eigenvalues of S = sum_j X_j^T X_j (g n/d1 square).

The search (like ALS, it cannot lose): fix V, the F leading eigenvectors of S, whose kept energy
tr(V^T S V) is a sum over groups of ||sum_s P_{u_s} V_s||^2 (V_s: slot s's rows of V); raise that
sum by swapping units between randomly paired groups and slots within groups (the best swap of
each pair, all pairs at once: they are disjoint); then recompute V. The true kept energy is at
least tr(V^T S_new V) >= tr(V^T S_old V), the old energy. c_fc and c_proj are searched together,
each weighted by 1 / its squared norm (their kept shares add). With calibration, c_fc's panels come
from its whitened matrix (calib.kron_whiten) and c_proj's rows are scaled by the RMS of their
inputs (sqrt of C's diagonal, which moves with the units; its off-diagonal does not enter).
"""

import copy

import torch

from calib import DAMP, damped, kron_whiten

ROUNDS = 60          # swap rounds per fixed V
OUTER = 5            # recomputations of V (the search stops early when one gains nothing)
MAX_GROUP_SIDE = 256  # S is at most this wide (g * n/d1); larger shapes are not searched


def unit_panels(W_fc, W_proj, dim1):
    """(c_fc panels (H, d1, n/d1), c_proj panels (H, d1, n/d1)) of W_fc (n, H), W_proj (H, n)."""
    n, H = W_fc.shape
    return (W_fc.double().T.reshape(H, dim1, n // dim1).contiguous(),
            W_proj.double().reshape(H, dim1, n // dim1).contiguous())


def group_stack(P, order, g):
    """X_j for every group: (H / g, d1, g * c) for panels P (H, d1, c) in the order `order`."""
    H, r, c = P.shape
    return P[order].view(H // g, g, r, c).permute(0, 2, 1, 3).reshape(H // g, r, g * c)


def kept_share(P, order, g, n_factors):
    """Energy the Van Loan fit keeps with this order, as a share of ||W||^2."""
    X = group_stack(P, order, g)
    S = torch.einsum('jrk,jrl->kl', X, X)
    return (torch.linalg.eigvalsh(S)[-n_factors:].sum() / (P * P).sum()).item()


def _codes(panels, order, g, n_factors):
    """z (H, g, D) float32: z[u, s] = P_u V_s for each matrix (flattened, 1/||P||-weighted, joined)."""
    parts = []
    for P in panels:
        H, r, c = P.shape
        X = group_stack(P, order, g)
        V = torch.linalg.eigh(torch.einsum('jrk,jrl->kl', X, X))[1][:, -n_factors:].reshape(g, c, n_factors)
        parts.append((torch.einsum('urc,scf->usrf', P, V) / P.norm()).reshape(H, g, r * n_factors))
    return torch.cat(parts, dim=-1).float()


def _swap_rounds(z, pos, rounds, gen):
    """Raise sum_j ||sum_s z[pos[j, s], s]||^2 by swaps; pos (groups, g) is updated and returned."""
    n_groups, g = pos.shape
    slots = torch.arange(g)
    for _ in range(rounds):
        own = z[pos, slots]                                  # (groups, g, D): each unit in its slot
        sums = own.sum(1)                                    # (groups, D)
        base = (sums * sums).sum(-1)
        tol = 1e-6 * base.mean()                            # below float32's noise in the sums
        # slots within a group: swap s and t
        Z = z[pos]                                           # (groups, g units, g slots, D)
        new = sums[:, None, None] - own[:, :, None] - own[:, None, :] + Z + Z.transpose(1, 2)
        gain = (new * new).sum(-1) - base[:, None, None]
        best, at = gain.flatten(1).max(1)
        ok = torch.nonzero(best > tol).flatten()   # s == t gains nothing, so these swap two slots
        s, t = at[ok] // g, at[ok] % g
        u, v = pos[ok, s].clone(), pos[ok, t].clone()
        pos[ok, s], pos[ok, t] = v, u
        # units between random pairs of groups: unit at (j, s) <-> unit at (k, t)
        own = z[pos, slots]
        sums = own.sum(1)
        base = (sums * sums).sum(-1)
        pairs = torch.randperm(n_groups, generator=gen)[:n_groups // 2 * 2].view(2, -1)
        j, k = pairs[0], pairs[1]
        Zj, Zk = z[pos[j]], z[pos[k]]                        # (pairs, g units, g slots, D)
        new_j = sums[j][:, None, None] - own[j][:, :, None] + Zk.transpose(1, 2)   # [p, s, t]
        new_k = sums[k][:, None, None] - own[k][:, None, :] + Zj                   # [p, s, t]
        gain = (new_j * new_j).sum(-1) + (new_k * new_k).sum(-1) - (base[j] + base[k])[:, None, None]
        best, at = gain.flatten(1).max(1)
        ok = best > tol
        s, t = at[ok] // g, at[ok] % g
        u, v = pos[j[ok], s].clone(), pos[k[ok], t].clone()
        pos[j[ok], s], pos[k[ok], t] = v, u
    return pos


def cluster_order(panels, g):
    """Hidden units grouped greedily by direction: the largest unit not yet placed opens a group
    and takes the g - 1 others most nearly parallel (or anti-parallel) to it, in c_fc and c_proj
    together (each panel set weighted by 1 / its norm, as in the search)."""
    feats = torch.cat([P.flatten(1) / P.norm() for P in panels], dim=1).float()  # (H, features)
    norms = feats.norm(dim=1)
    cos = ((feats / norms.clamp_min(1e-30)[:, None]) @ (feats / norms.clamp_min(1e-30)[:, None]).T).abs()
    free = torch.ones(len(feats), dtype=torch.bool)
    order = []
    for _ in range(len(feats) // g):
        seed = torch.where(free, norms, -1.0).argmax()
        free[seed] = False
        mates = torch.where(free, cos[seed], -1.0).topk(g - 1).indices
        free[mates] = False
        order += [seed.item(), *mates.tolist()]
    return torch.tensor(order)


def search_order(panels, g, n_factors, rounds=ROUNDS, outer=OUTER, seed=0):
    """(order (H,), shares before, shares after): an order of the hidden units whose summed kept
    shares (kept_share of every panel set) are at least the identity order's. The search starts
    from the better of the identity and cluster_order."""
    H = panels[0].shape[0]
    shares = lambda o: [kept_share(P, o, g, n_factors) for P in panels]
    order, clustered = torch.arange(H), cluster_order(panels, g)
    before = best = shares(order)
    if sum(shares(clustered)) > sum(before):
        order, best = clustered, shares(clustered)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(outer):
        pos = _swap_rounds(_codes(panels, order, g, n_factors), order.view(-1, g).clone(), rounds, gen)
        new = pos.reshape(-1)
        now = shares(new)
        if sum(now) <= sum(best):  # no gain with this V (the search has converged)
            break
        order, best = new, now
    return order, before, best


def model_orders(model, dim1, dim2, n_factors, grams=None, rounds=ROUNDS, seed=0, damp=DAMP):
    """({layer: order}, [report per layer]) for every MLP of a dense GPT, or ({}, []) when the
    Kronecker shape does not group hidden units (H / dim2 == 1: their order does not matter).
    grams: calib.mlp_grams' output, for the whitened objective. Raises ValueError where S would
    be wider than MAX_GROUP_SIDE."""
    n, H = model.config.n_embd, model.config.mlp_width
    g = H // dim2
    if g == 1:
        return {}, []
    if g * (n // dim1) > MAX_GROUP_SIDE:
        raise ValueError(f"--permute searches shapes whose B factor holds at most {MAX_GROUP_SIDE} entries; "
                         f"`{dim1} {dim2}` has {g * (n // dim1)}")
    from kron_decompose import one_thread  # kron_decompose imports this module
    orders, report = {}, []
    for i, block in enumerate(model.transformer.h):
        W_fc = block.mlp.c_fc.dense_weight().detach().double()      # (n, H)
        W_proj = block.mlp.c_proj.dense_weight().detach().double()  # (H, n)
        if grams is not None:
            prefix = f'transformer.h.{i}.mlp'
            C_fc = damped(grams[f'{prefix}.c_fc']['fit'], damp)
            C_proj = damped(grams[f'{prefix}.c_proj']['fit'], damp)
            W_fc = kron_whiten(W_fc, C_fc, dim1)[0]
            W_proj = W_proj * C_proj.diagonal().sqrt()[:, None]
        with one_thread():  # its many small steps: on a loaded machine threads wait on each other
            order, before, after = search_order(unit_panels(W_fc, W_proj, dim1), g, n_factors, rounds, seed=seed + i)
        orders[i] = order
        report.append(dict(layer=i, fc_before=before[0], fc_after=after[0], proj_before=before[1],
                           proj_after=after[1], moved=int((order != torch.arange(H)).sum())))
    return orders, report


def permute_hidden(model, orders):
    """A copy of a dense GPT whose block i's hidden unit p is the source's unit orders[i][p]:
    c_fc's output rows of nn.Linear's (out, in) weight and its bias, c_proj's input columns."""
    new = copy.deepcopy(model)
    with torch.no_grad():
        for i, order in orders.items():
            mlp = new.transformer.h[i].mlp
            mlp.c_fc.weight.copy_(mlp.c_fc.weight[order])
            if mlp.c_fc.bias is not None:
                mlp.c_fc.bias.copy_(mlp.c_fc.bias[order])
            mlp.c_proj.weight.copy_(mlp.c_proj.weight[:, order])
    return new


def permute_grams(grams, orders):
    """calib.mlp_grams' output for the permuted model: c_proj's Gram matrices permuted alike."""
    out = dict(grams)
    for i, order in orders.items():
        name = f'transformer.h.{i}.mlp.c_proj'
        out[name] = {k: (v[order][:, order] if torch.is_tensor(v) else v) for k, v in grams[name].items()}
    return out
