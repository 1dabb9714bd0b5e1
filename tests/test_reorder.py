"""reorder.py against independent computations: the kept energy against Van Loan's SVD of the
reordered matrices, the reordered model's logits against the original's, a planted order that
the search must find, and the claim that orders do not matter where B does not group units."""
import pytest
import torch

from kron_decompose import decompose_model, nearest_kron
from model import GPT, GPTConfig
from reorder import (cluster_order, kept_share, model_orders, permute_grams, permute_hidden, search_order,
                     unit_panels)


def kept_by_svd(W, a_shape, n_factors):
    """Share of ||W||^2 that Van Loan's fit keeps, from the singular values of the rearrangement."""
    S = nearest_kron(W, a_shape, n_factors)[2]
    return ((S ** 2).sum() / W.double().norm() ** 2).item()


@pytest.mark.parametrize('n,H,d1,d2,n_factors', [(16, 64, 8, 16, 1), (16, 64, 4, 32, 2), (12, 48, 12, 12, 1)])
def test_kept_share_is_van_loans_of_the_reordered_matrices(n, H, d1, d2, n_factors):
    gen = torch.Generator().manual_seed(0)
    W_fc = torch.randn(n, H, generator=gen, dtype=torch.float64)
    W_proj = torch.randn(H, n, generator=gen, dtype=torch.float64)
    P_fc, P_proj = unit_panels(W_fc, W_proj, d1)
    for _ in range(3):
        order = torch.randperm(H, generator=gen)
        assert abs(kept_share(P_fc, order, H // d2, n_factors) - kept_by_svd(W_fc[:, order], (d1, d2), n_factors)) < 1e-12
        assert abs(kept_share(P_proj, order, H // d2, n_factors) - kept_by_svd(W_proj[order], (d2, d1), n_factors)) < 1e-12


def test_search_never_loses_and_finds_a_planted_order():
    gen = torch.Generator().manual_seed(1)
    n, H, d1, d2 = 32, 128, 32, 32  # 81M-like: B (1, 4) in c_fc, (4, 1) in c_proj
    # exact Kronecker products with their hidden units shuffled: the right order keeps everything
    W_fc = torch.kron(torch.randn(d1, d2, generator=gen, dtype=torch.float64), torch.randn(1, 4, generator=gen, dtype=torch.float64))
    W_proj = torch.kron(torch.randn(d2, d1, generator=gen, dtype=torch.float64), torch.randn(4, 1, generator=gen, dtype=torch.float64))
    shuffle = torch.randperm(H, generator=gen)
    panels = unit_panels(W_fc[:, shuffle], W_proj[shuffle], d1)
    order, before, after = search_order(panels, 4, 1)
    assert sorted(order.tolist()) == list(range(H))
    assert sum(before) < 1.0 and sum(after) > 1.9  # of at most 2
    assert kept_by_svd(W_fc[:, shuffle][:, order], (d1, d2), 1) == pytest.approx(after[0], abs=1e-12)
    # random matrices, several seeds and shapes: the summed share never falls
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        for d1, d2, F in ((32, 32, 1), (16, 64, 2)):
            panels = unit_panels(torch.randn(n, H, generator=g, dtype=torch.float64),
                                 torch.randn(H, n, generator=g, dtype=torch.float64), d1)
            order, before, after = search_order(panels, H // d2, F, rounds=5, outer=2, seed=seed)
            assert sum(after) >= sum(before) and sorted(order.tolist()) == list(range(H))


def test_cluster_order_is_a_permutation_of_parallel_groups():
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(8, 10, generator=gen, dtype=torch.float64)
    units = torch.cat([base[i // 4] * (i % 4 + 1) * (-1) ** i for i in range(32)]).view(32, 2, 5)
    shuffle = torch.randperm(32, generator=gen)
    order = cluster_order([units[shuffle]], 4)
    groups = shuffle[order].view(8, 4) // 4  # which base vector each placed unit came from
    assert (groups == groups[:, :1]).all()


def tiny_dense(seed=0, n_embd=32):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=n_embd, block_size=16, vocab_size=64))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def test_reordered_model_has_the_same_logits():
    dense = tiny_dense()
    gen = torch.Generator().manual_seed(3)
    orders = {i: torch.randperm(128, generator=gen) for i in range(2)}
    permuted = permute_hidden(dense, orders)
    idx = torch.randint(0, 64, (3, 16), generator=gen)
    with torch.no_grad():
        a, b = dense(idx)[0], permuted(idx)[0]
    assert (a - b).abs().max() < 1e-5 * a.abs().max()
    assert not torch.equal(dense.transformer.h[0].mlp.c_fc.weight, permuted.transformer.h[0].mlp.c_fc.weight)
    # the source is untouched; the permuted hidden layer is the source's, reordered
    x = torch.randn(5, 32, generator=gen)
    for i, o in orders.items():
        src, new = dense.transformer.h[i].mlp.c_fc, permuted.transformer.h[i].mlp.c_fc
        with torch.no_grad():
            assert torch.allclose(new(x), src(x)[:, o])
    # Gram matrices of c_proj's input follow the units
    C = torch.randn(128, 128, generator=gen, dtype=torch.float64)
    grams = {f'transformer.h.{i}.mlp.{w}': {'fit': C, 'held': C, 'fit_tokens': 1} for i in range(2) for w in ('c_fc', 'c_proj')}
    out = permute_grams(grams, orders)
    assert torch.equal(out['transformer.h.0.mlp.c_proj']['fit'], C[orders[0]][:, orders[0]])
    assert out['transformer.h.0.mlp.c_fc']['fit'] is C


def test_model_orders_raise_the_kept_energy_and_say_when_order_does_not_matter():
    dense = tiny_dense()
    orders, report = model_orders(dense, 32, 32, 1, rounds=10)
    assert set(orders) == {0, 1} and len(report) == 2
    with torch.no_grad():
        _, plain = decompose_model(dense, 32, 32, 1, normalize=False)
        _, better = decompose_model(dense, 32, 32, 1, normalize=False, orders=orders)
    for r in report:
        assert r['fc_after'] + r['proj_after'] >= r['fc_before'] + r['proj_before']
    for p, b, s in zip(plain, better, [x for r in report for x in (r['fc_after'], r['proj_after'])]):
        assert b['rel_err_vl'] == pytest.approx(p['rel_err'], abs=1e-12)  # plain Van Loan in the source order
        assert b['rel_err'] == pytest.approx((1 - s) ** 0.5, abs=1e-9)    # the fit keeps what the search said
    # c_fc's B is a column (hidden units not grouped): any order keeps the same energy
    assert model_orders(dense, 16, 128, 1) == ({}, [])
    W_fc = dense.transformer.h[0].mlp.c_fc.dense_weight().detach()
    shares = {round(kept_by_svd(W_fc[:, torch.randperm(128)], (16, 128), 1), 12) for _ in range(4)}
    assert len(shares) == 1
