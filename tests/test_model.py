"""model.py against independent references: torch.kron, HF GPT2LMHeadModel, the reference bookkeeping."""
import pytest
import torch

from model import GPT, GPTConfig

# (dim1, dim2, factors) -> paper parameter count for GPT-2 small (docs/reference.md)
PAPER_COUNTS = {
    (768, 768, 1): 81_972_576,
    (384, 3072, 1): 96_128_304,
    (256, 1024, 2): 80_400_048,
    (256, 1024, 4): 92_983_392,
    (32, 64, 1): 67_893_504,
}


def meta_gpt(**kw):
    with torch.device('meta'):
        return GPT(GPTConfig(**kw))


# ---------------------------------------------------------------- shapes and counts

def test_gpt2_small_parameter_counts_both_ways():
    dense = meta_gpt()
    assert dense.num_params('paper') == 124_439_808
    assert dense.num_params('nanogpt') == 124_439_808 - 1024 * 768
    for (d1, d2, f), count in PAPER_COUNTS.items():
        m = meta_gpt(mlp='kron', kron_dim1=d1, kron_dim2=d2, kron_factors=f)
        assert m.num_params('paper') == count, (d1, d2, f)
        assert m.num_params('nanogpt') == count - 1024 * 768
        # a factored model's size = everything else + 24 x one factored matrix
        one = sum(p.numel() for n, p in m.named_parameters() if n.startswith('transformer.h.0.mlp.c_fc.') and not n.endswith('bias'))
        assert count == 67_816_704 + 24 * one
    scal = meta_gpt(mlp='kron', kron_dim1=256, kron_dim2=1024, kron_factors=4, kron_scalers=True)
    assert scal.num_params() == 92_983_392 + 96


def test_c_proj_uses_transposed_factor_shapes():
    m = meta_gpt(n_layer=1, mlp='kron', kron_dim1=384, kron_dim2=3072)
    mlp = m.transformer.h[0].mlp
    assert tuple(mlp.c_fc.A.shape[1:]) == (384, 3072) and tuple(mlp.c_fc.B.shape[1:]) == (2, 1)
    assert tuple(mlp.c_proj.A.shape[1:]) == (3072, 384) and tuple(mlp.c_proj.B.shape[1:]) == (1, 2)


@pytest.mark.parametrize('n_embd,n_head,n_layer', [(1024, 16, 24), (1280, 20, 36), (1600, 25, 48), (768, 12, 6)])
def test_shapes_follow_config_for_the_gpt2_family(n_embd, n_head, n_layer):
    m = meta_gpt(n_embd=n_embd, n_head=n_head, n_layer=n_layer, mlp='kron', kron_dim1=n_embd // 2, kron_dim2=n_embd)
    lin = m.transformer.h[0].mlp.c_fc
    assert lin.in_features == n_embd and lin.out_features == 4 * n_embd
    assert tuple(lin.B.shape[1:]) == (2, 4)
    dense = meta_gpt(n_embd=n_embd, n_head=n_head, n_layer=n_layer)
    factored = sum(p.numel() for _, l in m.mlp_linears() for p in (l.A, l.B))
    assert m.num_params() == dense.num_params() - 2 * n_layer * 4 * n_embd ** 2 + factored


def test_bad_kron_dims_list_valid_divisors():
    with pytest.raises(ValueError, match=r'dim_1=100 must divide n_embd=768; valid: \[1, 2, 3, 4, 6, 8'):
        GPTConfig(mlp='kron', kron_dim1=100, kron_dim2=768)
    with pytest.raises(ValueError, match=r'dim_2=5 must divide 4\*n_embd=3072'):
        GPTConfig(mlp='kron', kron_dim1=768, kron_dim2=5)
    with pytest.raises(ValueError, match=r'between 1 and 4'):
        GPTConfig(mlp='kron', kron_dim1=768, kron_dim2=768, kron_factors=5)
    with pytest.raises(ValueError, match="mlp='conv'"):
        GPTConfig(mlp='conv')


# ---------------------------------------------------------------- against Hugging Face

def test_dense_logits_equal_hf(tiny_hf_dir):
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    ours = GPT.from_pretrained(tiny_hf_dir).eval()
    idx = torch.randint(0, 50257, (2, 100), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(idx).logits
        logits, _ = ours(idx)
    assert (logits - ref).abs().max().item() < 1e-4


def test_loss_is_mean_next_token_cross_entropy(tiny_hf_dir):
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    ours = GPT.from_pretrained(tiny_hf_dir).eval()
    idx = torch.randint(0, 50257, (2, 33), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, loss = ours(idx[:, :-1], idx[:, 1:])
        ref = hf(idx, labels=idx).loss  # HF shifts the labels itself
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)




def test_with_mlp_resets_every_kinds_fields():
    from model import with_mlp
    kron = GPTConfig(n_embd=64, n_head=4, mlp='kron', kron_dim1=16, kron_dim2=64, kron_factors=2, kron_scalers=True)
    low = with_mlp(kron, 'lowrank', lowrank_rank=5)
    assert (low.mlp, low.lowrank_rank, low.kron_dim1, low.kron_factors, low.kron_scalers) == ('lowrank', 5, 0, 1, False)
    assert with_mlp(low, 'dense') == GPTConfig(n_embd=64, n_head=4)
    with pytest.raises(ValueError, match='dim_1=0 must divide'):
        with_mlp(low, 'kron')  # a kind's own checks still run


@pytest.mark.parametrize('kind', [dict(), dict(mlp='kron', kron_dim1=16, kron_dim2=32, kron_factors=2)])
def test_kv_cache_continues_the_full_forward(kind):
    """Positions fed in pieces through a KVCache (a prompt, several tokens at once, one token) give
    the logits of one forward over the whole sequence; the attention tricks refuse a cache."""
    from model import KVCache
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=60, n_layer=2, n_head=4, n_embd=32, **kind)).eval()
    idx = torch.randint(0, 60, (2, 20))
    cache = KVCache(model.config.n_layer)
    with torch.no_grad():
        full = model(idx)[0]
        pieces = [model.head(model.hidden_states(idx[:, a:b], cache)) for a, b in ((0, 7), (7, 12), (12, 13), (13, 20))]
    assert len(cache) == 20
    assert (torch.cat(pieces, 1) - full).abs().max() < 1e-5 and full.abs().max() > 0.1
    tricky = GPT(GPTConfig(block_size=32, vocab_size=60, n_layer=1, n_head=4, n_embd=32, time_mixing='shift'))
    with pytest.raises(ValueError, match='without a KV cache'):
        tricky.hidden_states(idx, KVCache(1))
