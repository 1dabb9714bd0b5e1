"""minGPT-tuned's time-weighting and time-mixing (model.CausalSelfAttention): identity at
initialisation, the circulant weights and the shift against explicit constructions."""
import pytest
import torch
from transformers import GPT2LMHeadModel

from model import GPT, GPTConfig, CausalSelfAttention

TINY = dict(block_size=32, vocab_size=97, n_layer=2, n_head=4, n_embd=32)


@pytest.mark.parametrize('tricks', [dict(time_weighting=True), dict(time_mixing=True),
                                    dict(time_weighting=True, time_mixing=True)])
def test_tricks_at_init_leave_logits_unchanged(tricks):
    torch.manual_seed(0)
    plain = GPT(GPTConfig(**TINY)).eval()
    tuned = GPT(GPTConfig(**TINY, **tricks)).eval()
    missing, unexpected = tuned.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all('.attn.time_' in k for k in missing) and not unexpected
    idx = torch.randint(0, TINY['vocab_size'], (3, 20))
    with torch.no_grad():
        torch.testing.assert_close(tuned(idx)[0], plain(idx)[0], rtol=0, atol=1e-6)


def test_pretrained_weights_load_with_the_tricks_on(tiny_hf_dir):
    hf = GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    model = GPT.from_pretrained(tiny_hf_dir, time_weighting=True, time_mixing=True).eval()
    idx = torch.randint(0, 50257, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)


def test_circulant_weights_equal_an_explicit_matrix():
    torch.manual_seed(1)
    attn = CausalSelfAttention(GPTConfig(**TINY, time_weighting=True))
    with torch.no_grad():
        attn.time_w.normal_()
        attn.time_gamma.normal_()
    T = 11
    expected = torch.zeros(TINY['n_head'], T, T)
    for h in range(TINY['n_head']):
        for i in range(T):
            for j in range(i + 1):
                expected[h, i, j] = attn.time_w[h, i - j] * attn.time_gamma[h, i]
    torch.testing.assert_close(attn.time_weights(T), expected, rtol=0, atol=0)


def test_time_weighted_attention_equals_explicit_computation():
    torch.manual_seed(2)
    cfg = GPTConfig(**TINY, time_weighting=True)
    attn = CausalSelfAttention(cfg).eval()
    with torch.no_grad():
        attn.time_w.uniform_(0.5, 1.5)
        attn.time_gamma.uniform_(0.5, 1.5)
    x = torch.randn(2, 9, cfg.n_embd)
    B, T, C = x.shape
    hs = C // cfg.n_head
    q, k, v = (x @ attn.c_attn.weight.t() + attn.c_attn.bias).split(C, dim=2)
    y = torch.zeros(B, T, C)
    for h in range(cfg.n_head):
        sl = slice(h * hs, (h + 1) * hs)
        for i in range(T):
            scores = (k[:, :i + 1, sl] @ q[:, i, sl, None]).squeeze(-1) / hs ** 0.5  # (B, i+1)
            p = torch.softmax(scores, dim=-1)
            w = torch.stack([attn.time_w[h, i - j] for j in range(i + 1)]) * attn.time_gamma[h, i]
            y[:, i, sl] = ((p * w)[..., None] * v[:, :i + 1, sl]).sum(1)
    expected = y @ attn.c_proj.weight.t() + attn.c_proj.bias
    with torch.no_grad():
        torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_time_mixing_at_one_is_minGPT_tuned_shift():
    attn = CausalSelfAttention(GPTConfig(**TINY, time_mixing=True, time_mix_init=1.0))
    x = torch.randn(2, 7, TINY['n_embd'])
    half = TINY['n_embd'] // 2
    expected = x.clone()
    expected[:, 0, :half] = 0
    expected[:, 1:, :half] = x[:, :-1, :half]
    assert torch.equal(attn.shift_mix(x), expected)


def test_time_mixing_at_zero_is_identity_and_mixes_linearly():
    attn = CausalSelfAttention(GPTConfig(**TINY, time_mixing=True))
    x = torch.randn(2, 7, TINY['n_embd'])
    assert torch.equal(attn.shift_mix(x), x)
    with torch.no_grad():
        attn.time_mix.fill_(0.25)
    half = TINY['n_embd'] // 2
    prev = torch.cat([torch.zeros(2, 1, half), x[:, :-1, :half]], dim=1)
    torch.testing.assert_close(attn.shift_mix(x)[..., :half], 0.75 * x[..., :half] + 0.25 * prev)


def test_tricks_are_learnable_and_not_weight_decayed():
    torch.manual_seed(3)
    model = GPT(GPTConfig(**TINY, time_weighting=True, time_mixing=True))
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-2, betas=(0.9, 0.95))
    time_ids = {id(p) for n, p in model.named_parameters() if '.time_' in n}
    decayed = {id(p) for g in opt.param_groups if g['weight_decay'] > 0 for p in g['params']}
    assert len(time_ids) == 3 * TINY['n_layer'] and not time_ids & decayed
    idx = torch.randint(0, TINY['vocab_size'], (4, 16))
    _, loss = model(idx, idx)
    loss.backward()
    for n, p in model.named_parameters():
        if '.time_' in n:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
