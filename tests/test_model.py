"""model.py against independent references: torch.kron, HF GPT2LMHeadModel, the reference bookkeeping."""
import os

import pytest
import torch
from torch.nn import functional as F

from model import (GPT, GPTConfig, KRON_PATHS, KronLinear, kron_costs, kron_shapes, load_checkpoint,
                   load_model, save_checkpoint, token_nll)

# (dim1, dim2, factors) -> paper parameter count for GPT-2 small (REFERENCE.md)
PAPER_COUNTS = {
    (768, 768, 1): 81_972_576,
    (384, 3072, 1): 96_128_304,
    (256, 1024, 2): 80_400_048,
    (256, 1024, 4): 92_983_392,
    (32, 64, 1): 67_893_504,
}
# multiply-adds of one factored c_fc per token relative to dense, cheaper order (REFERENCE.md)
MAC_RATIOS = {(768, 768, 1): 0.25, (384, 3072, 1): 0.50, (256, 1024, 2): 0.67, (256, 1024, 4): 1.34,
              (32, 64, 1): 0.05}


def meta_gpt(**kw):
    with torch.device('meta'):
        return GPT(GPTConfig(**kw))


def kron_reference(lin):
    """sum_f s_f * torch.kron(A_f, B_f), the (in, out) matrix the layer stands for."""
    s = lin.scale if lin.scale is not None else torch.ones(lin.A.shape[0], dtype=lin.A.dtype)
    return sum(s[f] * torch.kron(lin.A[f], lin.B[f]) for f in range(lin.A.shape[0]))


# ---------------------------------------------------------------- Kronecker layer

@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('in_f,out_f,a_shape,factors,scalers', [
    (8, 12, (4, 6), 1, False),    # both factors non-trivial
    (8, 12, (4, 6), 3, True),     # several factors with scalars
    (12, 8, (6, 4), 2, False),    # c_proj-like orientation
    (16, 64, (16, 16), 1, False),  # 81M-like: B is (1, 4)
    (64, 16, (16, 16), 1, True),   # 81M c_proj-like: B is (4, 1)
    (16, 64, (8, 64), 1, False),   # 96M-like: B is (2, 1)
])
def test_kron_forward_and_grads_match_torch_kron(path, in_f, out_f, a_shape, factors, scalers):
    torch.manual_seed(0)
    lin = KronLinear(in_f, out_f, a_shape, factors, scalers=scalers).double()
    with torch.no_grad():
        lin.bias.normal_()
        if scalers:
            lin.scale.uniform_(0.5, 2.0)
    lin.force_path = path
    x = torch.randn(3, 5, in_f, dtype=torch.double, requires_grad=True)
    y = lin(x)
    params = [p for p in lin.parameters()]
    g = torch.randn_like(y)
    grads = torch.autograd.grad((y * g).sum(), [x] + params)

    ref = x @ kron_reference(lin) + lin.bias
    ref_grads = torch.autograd.grad((ref * g).sum(), [x] + params)
    assert y.shape == (3, 5, out_f)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lin.dense_weight(), kron_reference(lin))


def test_kron_fp32_matches_within_rounding():
    torch.manual_seed(0)
    lin = KronLinear(768, 3072, (768, 768))
    x = torch.randn(64, 768)
    ref = x.double() @ kron_reference(lin).double() + lin.bias.double()
    for path in KRON_PATHS:
        lin.force_path = path
        torch.testing.assert_close(lin(x).double(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('dims,ratio', MAC_RATIOS.items())
def test_cost_model_matches_reference_ratios(dims, ratio):
    cfg = GPTConfig(mlp='kron', kron_dim1=dims[0], kron_dim2=dims[1], kron_factors=dims[2])
    (a, b), _ = kron_shapes(cfg)
    n = 4096
    costs = kron_costs(*a, *b, dims[2], n)
    dense = n * 768 * 3072
    factored = min(costs['a_first'], costs['b_first'])
    assert factored / dense == pytest.approx(ratio, abs=0.005)


def test_cost_model_orders_for_81m():
    # x @ (A (768x768) kron B (1x4)): contracting A first costs 0.25x dense, B first 1.0x
    costs = kron_costs(768, 768, 1, 4, 1, 1000)
    dense = 1000 * 768 * 3072
    assert costs['a_first'] / dense == pytest.approx(0.25, abs=0.005)
    assert costs['b_first'] / dense == pytest.approx(1.0, abs=0.005)
    lin = KronLinear(768, 3072, (768, 768))
    assert lin.path(1000) == 'a_first'
    assert lin.path(1) == 'a_first'


def test_many_factors_fall_back_to_dense():
    # 92M-4 costs 1.34x dense factored: building the weight once is cheaper for a real batch
    lin = KronLinear(768, 3072, (256, 1024), n_factors=4)
    assert lin.path(4096) == 'dense'


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


@pytest.mark.parametrize('layout', ['contiguous', 'vocab-major'])
def test_token_nll_equals_cross_entropy(layout):
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, dtype=torch.float64) * 4
    if layout == 'vocab-major':  # GPT.head's CPU layout
        logits = logits.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    logits.requires_grad_(True)
    targets = torch.randint(0, 11, (3, 7))
    targets[0, :3] = targets[2, 6] = -1
    got = token_nll(logits, targets)
    ref = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=-1, reduction='none')
    torch.testing.assert_close(got, ref.view(3, 7), rtol=0, atol=1e-12)
    assert (got[targets == -1] == 0).all()
    w = torch.rand(3, 7, dtype=torch.float64)  # an upstream gradient other than ones
    g_got, = torch.autograd.grad((got * w).sum(), logits)
    g_ref, = torch.autograd.grad((ref.view(3, 7) * w).sum(), logits)
    torch.testing.assert_close(g_got, g_ref, rtol=0, atol=1e-12)


def test_loss_skips_targets_of_minus_one():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=8)).eval()
    idx, targets = torch.randint(0, 50, (2, 16)), torch.randint(0, 50, (2, 16))
    targets[:, :10] = -1
    with torch.no_grad():
        logits, loss = model(idx, targets)
        # the GPU branch of GPT.head (nn.Linear) gives the same logits as the CPU one
        torch.testing.assert_close(model.lm_head(model.hidden_states(idx)), logits)
    ref = F.cross_entropy(logits[:, 10:].reshape(-1, 50), targets[:, 10:].reshape(-1))
    torch.testing.assert_close(loss, ref)


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_rebuilds_from_model_args(tmp_path):
    from dataclasses import asdict
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=32, vocab_size=100, n_layer=2, n_head=2, n_embd=16, mlp='kron',
                    kron_dim1=4, kron_dim2=8, kron_factors=2, kron_scalers=True)
    model = GPT(cfg).eval()
    path = tmp_path / 'k.pt'
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(cfg)}, path)
    assert os.listdir(tmp_path) == ['k.pt']  # no temporary file left behind
    loaded, ckpt = load_model(str(path))
    assert loaded.config == cfg
    idx = torch.randint(0, 100, (1, 20))
    torch.testing.assert_close(loaded.eval()(idx)[0], model(idx)[0])


def test_bad_checkpoints_are_named_in_the_error(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        load_checkpoint(str(tmp_path / 'missing.pt'))
    junk = tmp_path / 'junk.pt'
    junk.write_text('not a checkpoint')
    with pytest.raises(ValueError, match='junk.pt is not a readable torch file'):
        load_checkpoint(str(junk))
    other = tmp_path / 'other.pt'
    torch.save({'weights': 1}, other)
    with pytest.raises(ValueError, match='other.pt is not a GPT checkpoint'):
        load_checkpoint(str(other))


@pytest.mark.parametrize('path', KRON_PATHS)
def test_kron_accepts_non_contiguous_input(path):
    torch.manual_seed(0)
    lin = KronLinear(8, 12, (4, 6), n_factors=2)
    lin.force_path = path
    x = torch.randn(8, 5).t()  # (5, 8), a transposed view
    assert not x.is_contiguous()
    torch.testing.assert_close(lin(x), x @ kron_reference(lin) + lin.bias)
