"""KronLinear's fast paths against torch.kron (values and gradients), its multiply-adds against an
independent count (torch's FLOP counter), its cost-model choices, and torch.compile without graph breaks."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model import GPT, GPTConfig, KRON_PATHS, MLP, KronLinear, kron_costs, kron_shapes


def kron_reference(lin):
    s = lin.scale if lin.scale is not None else torch.ones(lin.A.shape[0], dtype=lin.A.dtype)
    return sum(s[f] * torch.kron(lin.A[f], lin.B[f]) for f in range(lin.A.shape[0]))


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
    lin.force_path = path
    return lin


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('in_f,out_f,a_shape,factors', STRUCTURES)
def test_every_path_and_its_gradients_equal_torch_kron(in_f, out_f, a_shape, factors, path, bias):
    lin = random_layer(in_f, out_f, a_shape, factors, bias, path)
    x = torch.randn(2, 3, in_f, dtype=torch.double, requires_grad=True)
    y = lin(x)
    ref = x @ kron_reference(lin) + (lin.bias if bias else 0)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    wrt = [x, *lin.parameters()]
    for a, b in zip(torch.autograd.grad((y * g).sum(), wrt), torch.autograd.grad((ref * g).sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def b_major(n_a, n_b):
    """Index map from B-major feature order (i2, i1) to kron's (i1, i2) for n_a x n_b features."""
    return torch.arange(n_a * n_b).view(n_a, n_b).t().reshape(-1)


@pytest.mark.parametrize('swap_in,swap_out', [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('in_f,out_f,a_shape,factors', STRUCTURES)
def test_b_major_feature_orders_equal_permuted_torch_kron(in_f, out_f, a_shape, factors, path, swap_in, swap_out):
    """forward(swap_in/swap_out) is x @ W with W's rows / columns reordered to (i2, i1) / (j2, j1)."""
    lin = random_layer(in_f, out_f, a_shape, factors, True, path)
    (m1, n1), m2, n2 = a_shape, in_f // a_shape[0], out_f // a_shape[1]
    rows = b_major(m1, m2) if swap_in else torch.arange(in_f)
    cols = b_major(n1, n2) if swap_out else torch.arange(out_f)
    x = torch.randn(5, in_f, dtype=torch.double, requires_grad=True)
    y = lin(x, swap_in=swap_in, swap_out=swap_out)
    ref = x @ kron_reference(lin)[rows][:, cols] + lin.bias[cols]
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    wrt = [x, *lin.parameters()]
    for a, b in zip(torch.autograd.grad((y * g).sum(), wrt), torch.autograd.grad((ref * g).sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


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
    mlp.c_fc.force_path = mlp.c_proj.force_path = path
    x = torch.randn(2, 3, 8, dtype=torch.double, requires_grad=True)
    h = torch.nn.functional.gelu(x @ kron_reference(mlp.c_fc) + mlp.c_fc.bias, approximate='tanh')
    ref = h @ kron_reference(mlp.c_proj) + mlp.c_proj.bias
    y = mlp(x)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    wrt = [x, *mlp.parameters()]
    for a, b in zip(torch.autograd.grad(y.sum(), wrt), torch.autograd.grad(ref.sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('path', KRON_PATHS)
@pytest.mark.parametrize('a_shape', [(3, 2), (2, 3)])
def test_every_path_passes_gradcheck(a_shape, path, bias):
    """finite differences, independent of autograd; tiny so that it stays fast"""
    lin = random_layer(6, 6, a_shape, 2, bias, path)
    x = torch.randn(2, 6, dtype=torch.double, requires_grad=True)
    torch.autograd.gradcheck(lambda x, *ps: lin(x), (x, *lin.parameters()))


@pytest.mark.parametrize('path', KRON_PATHS)
def test_fp32_within_rounding_on_80m2_shape(path):
    torch.manual_seed(0)
    lin = KronLinear(768, 3072, (256, 1024), 2)
    lin.force_path = path
    x = torch.randn(32, 768)
    ref = x.double() @ kron_reference(lin).double() + lin.bias.double()
    torch.testing.assert_close(lin(x).double(), ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('in_f,out_f,a_shape,factors', STRUCTURES)
@pytest.mark.parametrize('path', ['a_first', 'b_first'])
def test_forward_multiply_adds_equal_kron_costs(in_f, out_f, a_shape, factors, path):
    """torch's FLOP counter sees the products the layer really runs; they cost what kron_costs says."""
    lin = KronLinear(in_f, out_f, a_shape, factors, bias=False)
    lin.force_path = path
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
        assert mlp.kron_paths(n_tokens) == paths                  # inside the MLP, hidden B-major


def test_more_factors_than_pays_off_falls_back_to_dense():
    """256 1024 4 costs 1.34x dense multiply-adds factored: dense weight for training-sized batches,
    factored for a single token, where building the weight would cost more than it saves."""
    fc, proj = gpt2_small_layers((256, 1024, 4))
    for n_tokens in (1024, 4096):
        assert fc.path(n_tokens) == proj.path(n_tokens) == 'dense'
    assert fc.path(1) != 'dense' and proj.path(1) != 'dense'


@pytest.mark.parametrize('dims', [(16, 16, 1), (4, 16, 2), (8, 64, 1)])
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
