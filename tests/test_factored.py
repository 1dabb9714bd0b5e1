"""factored.py: every kind of MLP matrix. KronLinear's paths against torch.kron (values and
gradients), its multiply-adds against an independent count (torch's FLOP counter), its cost-model
choices, torch.compile without graph breaks; the reference ratios of the paper's shapes."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import kron_fast
from factored import KronLinear, kron_reference, kron_shapes
from kron_fast import KRON_PATHS, kron_costs, transposed
from model import GPT, GPTConfig, MLP

# multiply-adds of one factored c_fc per token relative to dense, cheaper order (docs/reference.md)
MAC_RATIOS = {(768, 768, 1): 0.25, (384, 3072, 1): 0.50, (256, 1024, 2): 0.67, (256, 1024, 4): 1.34,
              (32, 64, 1): 0.05}


def torch_kron_sum(lin):
    """sum_f s_f * torch.kron(A_f, B_f), the (in, out) matrix the layer stands for."""
    s = lin.scale if lin.scale is not None else torch.ones(lin.A.shape[0], dtype=lin.A.dtype)
    return sum(s[f] * torch.kron(lin.A[f], lin.B[f]) for f in range(lin.A.shape[0]))



@pytest.mark.parametrize('scalers', [False, True])
def test_kron_reference_and_the_shape_picture(scalers):
    """factored.kron_reference is the test's torch.kron sum, and x @ W is the module docstring's
    picture: each row of x as an (m1, m2) matrix X, then A^T X B, read row by row"""
    lin = KronLinear(12, 20, (3, 4), n_factors=2, scalers=scalers).double()
    with torch.no_grad():
        for p in lin.parameters():
            p.normal_()
    W = kron_reference(lin.A, lin.B, lin.scale)
    assert torch.equal(W, torch_kron_sum(lin))
    x = torch.randn(5, 12, dtype=torch.double)
    X = x.view(5, 3, 4)  # (N, m1, m2)
    s = lin.scale if scalers else torch.ones(2, dtype=torch.double)
    Y = sum(s[f] * lin.A[f].t() @ X @ lin.B[f] for f in range(2))  # (N, n1, n2)
    torch.testing.assert_close(Y.reshape(5, 20), x @ W, rtol=1e-12, atol=1e-12)

def mlp_paths(mlp, n_tokens):
    """The paths c_fc and c_proj take inside the MLP's forward for n_tokens rows."""
    fc_args, proj_args = mlp.c_fc.pair_layout(mlp.c_proj, n_tokens)
    return mlp.c_fc.path(n_tokens, **fc_args), mlp.c_proj.path(n_tokens, **proj_args)


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
    lin.pinned_path = path
    x = torch.randn(3, 5, in_f, dtype=torch.double, requires_grad=True)
    y = lin(x)
    params = [p for p in lin.parameters()]
    g = torch.randn_like(y)
    grads = torch.autograd.grad((y * g).sum(), [x] + params)

    ref = x @ torch_kron_sum(lin) + lin.bias
    ref_grads = torch.autograd.grad((ref * g).sum(), [x] + params)
    assert y.shape == (3, 5, out_f)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lin.dense_weight(), torch_kron_sum(lin))


def test_kron_fp32_matches_within_rounding():
    torch.manual_seed(0)
    lin = KronLinear(768, 3072, (768, 768))
    x = torch.randn(64, 768)
    ref = x.double() @ torch_kron_sum(lin).double() + lin.bias.double()
    for path in KRON_PATHS:
        lin.pinned_path = path
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


@pytest.mark.parametrize('path', KRON_PATHS)
def test_kron_accepts_non_contiguous_input(path):
    torch.manual_seed(0)
    lin = KronLinear(8, 12, (4, 6), n_factors=2)
    lin.pinned_path = path
    x = torch.randn(8, 5).t()  # (5, 8), a transposed view
    assert not x.is_contiguous()
    torch.testing.assert_close(lin(x), x @ torch_kron_sum(lin) + lin.bias)


# (in, out, A shape, factors): the factor structures of the paper's models, scaled down
STRUCTURES = [
    (16, 64, (16, 16), 1),   # 81M c_fc: B (1, 4)
    (64, 16, (16, 16), 1),   # 81M c_proj: B (4, 1)
    (16, 64, (8, 64), 1),    # 96M c_fc: B (2, 1)
    (64, 16, (64, 8), 1),    # 96M c_proj: B (1, 2)
    (12, 48, (4, 16), 2),    # 80M-2 c_fc: B (3, 3), two factors
    (48, 12, (16, 4), 4),    # 92M-4 c_proj: B (3, 3), four factors
    (12, 20, (3, 4), 3),     # both factors non-trivial on both sides
]


def random_layer(in_f, out_f, a_shape, factors, bias, path):
    torch.manual_seed(0)
    lin = KronLinear(in_f, out_f, a_shape, factors, scalers=factors > 1, bias=bias).double()
    with torch.no_grad():
        for p in lin.parameters():
            p.normal_()
    lin.pinned_path = path
    return lin


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('in_f,out_f,a_shape,factors', STRUCTURES)
def test_every_path_and_its_gradients_equal_torch_kron(in_f, out_f, a_shape, factors, path, bias):
    lin = random_layer(in_f, out_f, a_shape, factors, bias, path)
    x = torch.randn(2, 3, in_f, dtype=torch.double, requires_grad=True)
    y = lin(x)
    ref = x @ torch_kron_sum(lin) + (lin.bias if bias else 0)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    wrt = [x, *lin.parameters()]
    for a, b in zip(torch.autograd.grad((y * g).sum(), wrt), torch.autograd.grad((ref * g).sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('permuted_out', [False, True])
@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('in_f,out_f,a_shape,factors', STRUCTURES)
def test_one_token_leaves_the_layer_unchanged(in_f, out_f, a_shape, factors, path, permuted_out):
    """One row (a KV-cache decoding step) through every path, without autograd: the output is the
    reference and no parameter is written (the B-first path once accumulated into the bias itself)."""
    lin = random_layer(in_f, out_f, a_shape, factors, True, path)
    before = {k: v.clone() for k, v in lin.state_dict().items()}
    x = torch.randn(1, 1, in_f, dtype=torch.double)
    with torch.no_grad():
        for _ in range(2):
            y = lin(x, permuted_out=permuted_out)
    ref = x @ torch_kron_sum(lin) + lin.bias
    if permuted_out:
        ref = ref[..., permuted_order(a_shape[1], out_f // a_shape[1])]
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    for k, v in lin.state_dict().items():
        assert torch.equal(v, before[k]), k


def permuted_order(n_a, n_b):
    """Index map from B-major feature order (i2, i1) to kron's (i1, i2) for n_a x n_b features."""
    return torch.arange(n_a * n_b).view(n_a, n_b).t().reshape(-1)


@pytest.mark.parametrize('permuted_in,permuted_out', [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('in_f,out_f,a_shape,factors', STRUCTURES)
def test_b_major_feature_orders_equal_permuted_torch_kron(in_f, out_f, a_shape, factors, path, permuted_in, permuted_out):
    """forward(permuted_in/permuted_out) is x @ W with W's rows / columns reordered to (i2, i1) / (j2, j1)."""
    lin = random_layer(in_f, out_f, a_shape, factors, True, path)
    (m1, n1), m2, n2 = a_shape, in_f // a_shape[0], out_f // a_shape[1]
    rows = permuted_order(m1, m2) if permuted_in else torch.arange(in_f)
    cols = permuted_order(n1, n2) if permuted_out else torch.arange(out_f)
    x = torch.randn(5, in_f, dtype=torch.double, requires_grad=True)
    y = lin(x, permuted_in=permuted_in, permuted_out=permuted_out)
    ref = x @ torch_kron_sum(lin)[rows][:, cols] + lin.bias[cols]
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    wrt = [x, *lin.parameters()]
    for a, b in zip(torch.autograd.grad((y * g).sum(), wrt), torch.autograd.grad((ref * g).sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('permuted_in,permuted_out', [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('in_f,out_f,a_shape,factors', STRUCTURES)
def test_every_path_under_bf16_autocast(in_f, out_f, a_shape, factors, path, permuted_in, permuted_out):
    """fp32 weights under torch.autocast(bfloat16), as train.py runs with dtype=bfloat16: a bf16 result,
    values and gradients within bf16's rounding of the float64 reference (a wrong order is off by ~100%)"""
    ref_lin = random_layer(in_f, out_f, a_shape, factors, True, path)
    lin = random_layer(in_f, out_f, a_shape, factors, True, path).float()
    (m1, n1), m2, n2 = a_shape, in_f // a_shape[0], out_f // a_shape[1]
    rows = permuted_order(m1, m2) if permuted_in else torch.arange(in_f)
    cols = permuted_order(n1, n2) if permuted_out else torch.arange(out_f)
    x = torch.randn(64, in_f, dtype=torch.double, requires_grad=True)
    xf = x.detach().float().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = lin(xf, permuted_in=permuted_in, permuted_out=permuted_out)
    assert y.dtype == torch.bfloat16
    ref = x @ torch_kron_sum(ref_lin)[rows][:, cols] + ref_lin.bias[cols]
    g = torch.randn_like(ref)
    grads = torch.autograd.grad((y.double() * g).sum(), [xf, *lin.parameters()])
    ref_grads = torch.autograd.grad((ref * g).sum(), [x, *ref_lin.parameters()])
    for a, b in zip((y, *grads), (ref, *ref_grads)):
        assert ((a.double() - b).norm() / b.norm()).item() < 0.06


@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('dims', [(4, 16, 1), (8, 8, 1), (2, 8, 3)])
def test_kron_mlp_equals_dense_mlp_of_its_weights(dims, path):
    """The MLP keeps its hidden layer in B-major order; outside, it is GELU(x W_fc + b) W_proj + b."""
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=8, mlp='kron',
                    kron_dim1=dims[0], kron_dim2=dims[1], kron_factors=dims[2])
    torch.manual_seed(0)
    mlp = MLP(cfg).double()
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_()
    mlp.c_fc.pinned_path = mlp.c_proj.pinned_path = path
    x = torch.randn(2, 3, 8, dtype=torch.double, requires_grad=True)
    h = torch.nn.functional.gelu(x @ torch_kron_sum(mlp.c_fc) + mlp.c_fc.bias, approximate='tanh')
    ref = h @ torch_kron_sum(mlp.c_proj) + mlp.c_proj.bias
    y = mlp(x)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    wrt = [x, *mlp.parameters()]
    for a, b in zip(torch.autograd.grad(y.sum(), wrt), torch.autograd.grad(ref.sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- the fused MLP (B vectors)

def vector_b_mlp(dims, bias=True, scalers=False, dtype=torch.double):
    """An MLP with kron dim_1 = n_embd (B a row vector in c_fc, a column in c_proj), random weights,
    pinned to the paths under which it runs fused."""
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=8, mlp='kron', bias=bias,
                    kron_dim1=dims[0], kron_dim2=dims[1], kron_factors=dims[2], kron_scalers=scalers)
    torch.manual_seed(0)
    mlp = MLP(cfg)
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_()
    mlp = mlp.to(dtype)
    mlp.c_fc.pinned_path, mlp.c_proj.pinned_path = 'a_first', 'b_first'
    return mlp


def dense_mlp_reference(mlp, x):
    h = torch.nn.functional.gelu(x @ torch_kron_sum(mlp.c_fc) + (0 if mlp.c_fc.bias is None else mlp.c_fc.bias),
                                 approximate='tanh')
    return h @ torch_kron_sum(mlp.c_proj) + (0 if mlp.c_proj.bias is None else mlp.c_proj.bias)


@pytest.mark.parametrize('rows_at_a_time', [1, 3, 1000])  # one, a part that leaves a remainder, all
@pytest.mark.parametrize('dims,bias,scalers', [
    ((8, 8, 1), True, False),   # 81M-like: B of 1 x 4
    ((8, 4, 2), True, True),    # two factors, B of 1 x 8, with scalars
    ((8, 2, 3), False, False),  # three factors, no biases
])
def test_fused_mlp_equals_the_dense_mlp_of_its_weights(dims, bias, scalers, rows_at_a_time, monkeypatch):
    mlp = vector_b_mlp(dims, bias, scalers)
    r, d = mlp.c_fc.shapes()[4], mlp.c_fc.shapes()[2]
    monkeypatch.setattr(kron_fast, 'VECTOR_MIDDLE_ELEMENTS', rows_at_a_time * r * d)
    x = torch.randn(2, 5, 8, dtype=torch.double, requires_grad=True)
    assert mlp.c_fc.fuses_with(mlp.c_proj, 10)
    y, ref = mlp(x), dense_mlp_reference(mlp, x)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    wrt = [x, *mlp.parameters()]
    for a, b in zip(torch.autograd.grad((y * g).sum(), wrt), torch.autograd.grad((ref * g).sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fused_mlp_passes_gradcheck(monkeypatch):
    mlp = vector_b_mlp((8, 4, 2), scalers=True)
    monkeypatch.setattr(kron_fast, 'VECTOR_MIDDLE_ELEMENTS', 2 * 8 * 2)  # 2 rows at a time, of 3
    x = torch.randn(3, 8, dtype=torch.double, requires_grad=True)
    torch.autograd.gradcheck(lambda x, *ps: mlp(x), (x, *mlp.parameters()))


def test_fused_mlp_under_bf16_autocast():
    """as train.py runs with dtype=bfloat16: a bf16 result, values and gradients within bf16's
    rounding of the float64 reference"""
    ref_mlp, mlp = vector_b_mlp((8, 4, 2), scalers=True), vector_b_mlp((8, 4, 2), scalers=True, dtype=torch.float)
    x = torch.randn(64, 8, dtype=torch.double, requires_grad=True)
    xf = x.detach().float().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = mlp(xf)
    assert y.dtype == torch.bfloat16
    ref = dense_mlp_reference(ref_mlp, x)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad((y.double() * g).sum(), [xf, *mlp.parameters()])
    ref_grads = torch.autograd.grad((ref * g).sum(), [x, *ref_mlp.parameters()])
    for a, b in zip((y, *grads), (ref, *ref_grads)):
        assert a.dtype == torch.float32 or a is y
        assert ((a.double() - b).norm() / b.norm()).item() < 0.06


def test_fused_mlp_multiply_adds_equal_its_count():
    mlp = vector_b_mlp((8, 4, 2), dtype=torch.float)
    with FlopCounterMode(display=False) as counter:
        mlp(torch.randn(7, 8))
    assert counter.get_total_flops() == 2 * mlp.macs(7)


def test_only_the_vector_b_shapes_fuse():
    """GPT-2 small: the 81M model (768 768 1) runs fused for any number of tokens; 96M, 80M-2 and
    67M, whose B factors are matrices, do not."""
    for dims, fused in [((768, 768, 1), True), ((384, 3072, 1), False), ((256, 1024, 2), False),
                        ((32, 64, 1), False)]:
        mlp = MLP(GPTConfig(mlp='kron', kron_dim1=dims[0], kron_dim2=dims[1], kron_factors=dims[2]))
        for n_tokens in (1, 1024, 4096):
            assert mlp.c_fc.fuses_with(mlp.c_proj, n_tokens) == fused


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('a_shape', [(3, 2), (2, 3)])
def test_every_path_passes_gradcheck(a_shape, path, bias):
    """finite differences, independent of autograd; tiny so that it stays fast"""
    lin = random_layer(6, 6, a_shape, 2, bias, path)
    x = torch.randn(2, 6, dtype=torch.double, requires_grad=True)
    torch.autograd.gradcheck(lambda x, *ps: lin(x), (x, *lin.parameters()))


def test_transposed_copy_is_contiguous_both_ways():
    """the layer's transposes: the value and gradient of x.transpose(1, 2), both contiguous"""
    x = torch.randn(3, 4, 5, dtype=torch.double, requires_grad=True)
    seen = []
    z = x * 1
    z.register_hook(seen.append)  # the gradient transposed() hands back, before any accumulation
    y = transposed(z)
    assert y.is_contiguous() and torch.equal(y, x.transpose(1, 2))
    g = torch.randn(3, 5, 4, dtype=torch.double)
    y.backward(g)
    assert seen[0].is_contiguous() and torch.equal(seen[0], g.transpose(1, 2))
    torch.autograd.gradcheck(transposed, (x,))


@pytest.mark.parametrize('path', KRON_PATHS)
def test_fp32_within_rounding_on_80m2_shape(path):
    torch.manual_seed(0)
    lin = KronLinear(768, 3072, (256, 1024), 2)
    lin.pinned_path = path
    x = torch.randn(32, 768)
    ref = x.double() @ torch_kron_sum(lin).double() + lin.bias.double()
    torch.testing.assert_close(lin(x).double(), ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('in_f,out_f,a_shape,factors', STRUCTURES)
@pytest.mark.parametrize('path', ['a_first', 'b_first'])
def test_forward_multiply_adds_equal_kron_costs(in_f, out_f, a_shape, factors, path):
    """torch's FLOP counter sees the products the layer really runs; they cost what kron_costs says."""
    lin = KronLinear(in_f, out_f, a_shape, factors, bias=False)
    lin.pinned_path = path
    n = 7
    with FlopCounterMode(display=False) as counter:
        lin(torch.randn(n, in_f))
    (m1, n1), (m2, n2) = a_shape, (in_f // a_shape[0], out_f // a_shape[1])
    assert counter.get_total_flops() == 2 * kron_costs(m1, n1, m2, n2, factors, n)[path]


def gpt2_small_layers(dims):
    cfg = GPTConfig(mlp='kron', kron_dim1=dims[0], kron_dim2=dims[1], kron_factors=dims[2])
    (a_fc, _), (a_proj, _) = kron_shapes(cfg)
    return KronLinear(768, 3072, a_fc, dims[2]), KronLinear(3072, 768, a_proj, dims[2])


@pytest.mark.parametrize('dims,paths', [
    ((768, 768, 1), ('a_first', 'b_first')),   # the 0.25x order on both matrices (the other is 1.0x)
    ((384, 3072, 1), ('b_first', 'a_first')),  # 0.50x
    ((256, 1024, 2), ('b_first', 'a_first')),  # 0.67x either way; these orders copy less memory
])
def test_cost_model_picks_the_cheap_order_on_paper_shapes(dims, paths):
    fc, proj = gpt2_small_layers(dims)
    mlp = MLP(GPTConfig(mlp='kron', kron_dim1=dims[0], kron_dim2=dims[1], kron_factors=dims[2]))
    for n_tokens in (1, 1024, 4096):
        assert (fc.path(n_tokens), proj.path(n_tokens)) == paths  # alone, features in kron order
        assert mlp_paths(mlp, n_tokens) == paths                  # inside the MLP, hidden B-major


def test_more_factors_than_pays_off_falls_back_to_dense():
    """256 1024 4 costs 1.34x dense multiply-adds factored: dense weight for training-sized batches,
    factored for a single token, where building the weight would cost more than it saves."""
    fc, proj = gpt2_small_layers((256, 1024, 4))
    for n_tokens in (1024, 4096):
        assert fc.path(n_tokens) == proj.path(n_tokens) == 'dense'
    assert fc.path(1) != 'dense' and proj.path(1) != 'dense'


@pytest.mark.parametrize('dims', [(16, 16, 1), (4, 16, 2), (8, 64, 1)])  # the first runs fused
def test_kron_mlp_compiles_without_graph_breaks(dims):
    torch._dynamo.reset()
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=32, mlp='kron',
                    kron_dim1=dims[0], kron_dim2=dims[1], kron_factors=dims[2])
    torch.manual_seed(0)
    mlp = MLP(cfg)
    x = torch.randn(2, 8, 16, requires_grad=True)
    compiled = torch.compile(mlp, fullgraph=True, backend='aot_eager')  # fullgraph: a break raises
    y, ref = compiled(x), mlp(x)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad((y * g).sum(), x), torch.autograd.grad((ref * g).sum(), x))
    model = GPT(cfg)
    explained = torch._dynamo.explain(model)(torch.randint(32, (2, 8)))
    assert explained.graph_break_count == 0


# ---------------------------------------------------------------- a new kind, added here alone

def test_a_new_kind_needs_only_its_class(tmp_path):
    """A block-diagonal kind defined in this test: registered, it builds, trains, checkpoints,
    exports to HF and reloads with no edit anywhere else."""
    import torch.nn as nn
    from checkpoint import load_model, save_checkpoint
    from dataclasses import asdict
    from factored import KINDS, MatrixKind, register
    from krony_to_gpt import export
    from transformers import GPT2LMHeadModel

    @register('blockdiag_test')
    class BlockDiagonal(MatrixKind):
        def __init__(self, in_features, out_features, bias=True):
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.W1 = nn.Parameter(torch.randn(in_features // 2, out_features // 2) * 0.02)
            self.W2 = nn.Parameter(torch.randn(in_features - in_features // 2, out_features - out_features // 2) * 0.02)
            self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

        @classmethod
        def from_config(cls, config, in_features, out_features, which):
            return cls(in_features, out_features, bias=config.bias)

        def dense_weight(self):
            return torch.block_diag(self.W1, self.W2)

        def macs(self, n_tokens):
            return n_tokens * (self.W1.numel() + self.W2.numel())

        def forward(self, x):
            h = x.shape[-1] // 2
            y = torch.cat([x[..., :h] @ self.W1, x[..., h:] @ self.W2], dim=-1)
            return y if self.bias is None else y + self.bias

    try:
        cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=64, mlp='blockdiag_test')
        torch.manual_seed(0)
        model = GPT(cfg)
        assert model.mlp_params() == 2 * 2 * 2 * (8 * 32)
        assert model.matmul_flops_per_token(4) == 2 * (2 * 4 * 16 ** 2 + 16 * 64 + 2 * 2 * 2 * 8 * 32)
        opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95))
        x = torch.randint(64, (4, 16))
        before = model.transformer.h[0].mlp.c_fc.W1.detach().clone()
        loss = model(x[:, :-1], x[:, 1:])[1]
        loss.backward()
        opt.step()
        assert not torch.equal(before, model.transformer.h[0].mlp.c_fc.W1)
        model.eval()
        with torch.no_grad():
            ref = model(x)[0]
        path = tmp_path / 'bd.pt'
        save_checkpoint({'model': model.state_dict(), 'model_args': asdict(cfg)}, path)
        loaded, _ = load_model(str(path))
        export(loaded, str(tmp_path / 'hf'))
        hf = GPT2LMHeadModel.from_pretrained(tmp_path / 'hf').eval()
        dense = GPT.from_pretrained(str(tmp_path / 'hf')).eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(x)[0], ref, rtol=0, atol=0)
            torch.testing.assert_close(hf(x).logits, ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(dense(x)[0], ref, rtol=1e-5, atol=1e-5)
    finally:
        KINDS.pop('blockdiag_test')
