"""inrank.py: the explained ratio against an independent numpy computation, the singular values
against a full SVD, and rank growth on a regression with a known rank."""
import numpy as np
import pytest
import torch

import inrank
from factored import LowRankLinear
from model import GPT, GPTConfig


def test_singular_values_equal_full_svd_of_the_active_product():
    torch.manual_seed(0)
    lin = LowRankLinear(48, 80, 24)
    lin.set_active_rank(10)
    expected = torch.linalg.svdvals(lin.U[:, :10] @ lin.V[:10]).detach()
    s = inrank.singular_values(lin)
    assert s.shape == (48,)
    torch.testing.assert_close(s[:10], expected[:10], rtol=1e-4, atol=1e-6)
    assert torch.all(s[10:] == 0) and expected[10:].max() < 1e-5


@pytest.mark.parametrize('k', [0, 1, 3, 7, 15])
def test_explained_ratio_zeroes_the_leading_entries_keeping_the_length(k):
    s = torch.sort(torch.rand(20, generator=torch.Generator().manual_seed(k)) ** 3, descending=True)[0]
    s[12:] = 0
    a = s.numpy().astype(np.float64)
    tail = np.concatenate([np.zeros(k), a[k:]])
    expected = 1 - np.var(tail, ddof=1) / np.var(a, ddof=1)
    assert inrank.explained_ratio(s, k) == pytest.approx(expected, abs=1e-6)
    # not the variance of the shorter vector s[k:] (for k > 0 the numbers differ)
    if 0 < k < 12:
        assert abs(inrank.explained_ratio(s, k) - (1 - np.var(a[k:], ddof=1) / np.var(a, ddof=1))) > 1e-3


def test_next_modes_finds_the_number_of_strong_modes():
    s = torch.cat([torch.full((6,), 5.0), torch.full((10,), 0.01), torch.zeros(48)])  # 64 values
    # 6 strong values pass 0.9 at k=6 and not before
    assert inrank.explained_ratio(s, 5) < 0.9 < inrank.explained_ratio(s, 6)
    assert inrank.next_modes(s, current=2, buffer_modes=10, max_rank=32, threshold=0.9) == 6
    # growth per check is capped below the buffer, and never goes back
    assert inrank.next_modes(s, current=2, buffer_modes=3, max_rank=32, threshold=0.9) == 4
    assert inrank.next_modes(s, current=9, buffer_modes=10, max_rank=32, threshold=0.9) == 9
    # current + buffer never passes the maximum rank
    assert inrank.next_modes(s, current=2, buffer_modes=10, max_rank=14, threshold=0.99) == 3


def test_rank_grows_to_a_known_rank_and_never_shrinks():
    torch.manual_seed(0)
    n, true_rank, buffer = 64, 6, 3
    Q1, _ = torch.linalg.qr(torch.randn(n, true_rank))
    Q2, _ = torch.linalg.qr(torch.randn(n, true_rank))
    W = Q1 @ torch.diag(torch.linspace(3, 2, true_rank)) @ Q2.t()
    lin = LowRankLinear(n, n, 32, bias=False)
    net = torch.nn.Sequential(lin)
    inrank.start(net, init_modes=1, buffer_modes=buffer)
    assert lin.rank == 1 + buffer
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    ranks = [lin.rank]
    for step in range(1, 301):
        x = torch.randn(128, n)
        loss = ((net(x) - x @ W) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        # the ranks not yet in use get exactly zero gradient
        assert lin.U.grad[:, lin.rank:].abs().max() == 0 and lin.V.grad[lin.rank:].abs().max() == 0
        opt.step()
        for _, old, new in inrank.update(net, step, warmup_iter=20, gap_iter=10, threshold=0.9,
                                         buffer_modes=buffer):
            assert 0 < new - old < buffer
        ranks.append(lin.rank)
    assert ranks == sorted(ranks) and ranks[-1] > ranks[0]
    assert inrank.ranks_found(net, buffer) == {'0': true_rank}
    assert loss.item() < 1e-4


def test_checks_only_after_warmup_on_gap_steps():
    torch.manual_seed(1)
    net = torch.nn.Sequential(LowRankLinear(32, 32, 16, bias=False))
    with torch.no_grad():  # a full-rank-looking product: every check wants to grow
        net[0].U.normal_()
        net[0].V.normal_()
    inrank.start(net, 1, 2)
    assert inrank.update(net, 20, warmup_iter=20, gap_iter=5, threshold=0.99, buffer_modes=2) == []
    assert inrank.update(net, 21, warmup_iter=20, gap_iter=5, threshold=0.99, buffer_modes=2) == []
    assert inrank.update(net, 25, warmup_iter=20, gap_iter=5, threshold=0.99, buffer_modes=2) == [('0', 3, 4)]


def test_start_checks_the_budget_and_the_model_kind():
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16, mlp='lowrank'))
    inrank.start(model, 2, 4)  # max rank min(16, 64) // 2 = 8
    assert [lin.rank for _, lin in model.mlp_linears()] == [6, 6]
    with pytest.raises(ValueError, match='allocated ranks'):
        inrank.start(model, 2, 7)
    with pytest.raises(ValueError, match="mlp='lowrank'"):
        inrank.start(GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16)), 2, 4)


def test_active_rank_survives_a_checkpoint_round_trip():
    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16, mlp='lowrank')
    model = GPT(cfg)
    inrank.start(model, 1, 2)
    model.transformer.h[0].mlp.c_proj.set_active_rank(5)
    again = GPT(cfg)
    again.load_state_dict(model.state_dict())
    assert [lin.rank for _, lin in again.mlp_linears()] == [3, 5]
    idx = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(again(idx)[0], model(idx)[0], rtol=0, atol=0)
