"""losses.py: the CPU vocabulary product and the token loss against torch's own."""

import pytest
import torch
from torch.nn import functional as F

from losses import cosine_loss, distill_loss, kd_kl, lm_logits, log_softmax, token_nll
from model import GPT, GPTConfig


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




@pytest.mark.parametrize('lead', [(2, 5), (1, 1), (7,)])
def test_lm_logits_equal_the_plain_product_in_any_layout(lead):
    torch.manual_seed(0)
    h, w = torch.randn(*lead, 16, dtype=torch.float64), torch.randn(37, 16, dtype=torch.float64)
    got = lm_logits(h, w)
    assert got.shape == (*lead, 37)
    torch.testing.assert_close(got, h @ w.t(), rtol=0, atol=1e-12)
    torch.testing.assert_close(got.softmax(-1), F.softmax(h @ w.t(), -1))  # behaves like ordinary logits


@pytest.mark.parametrize('layout', ['contiguous', 'vocab-major'])
def test_log_softmax_equals_torch(layout):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 9, dtype=torch.float64) * 3
    if layout == 'vocab-major':
        x = x.permute(2, 0, 1).contiguous().permute(1, 2, 0)
        assert x.stride(-1) != 1
    torch.testing.assert_close(log_softmax(x), F.log_softmax(x, -1), rtol=0, atol=1e-12)


def test_distillation_loss():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    hs, ht = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    assert kd_kl(student, student.clone(), 2.0).abs() < 1e-6
    T = 2.0
    # the textbook form: sum_v p_t (log p_t - log p_s), averaged over the 10 positions
    p_t = torch.softmax(teacher / T, -1)
    direct = (p_t * (p_t.log() - torch.softmax(student / T, -1).log())).sum() / 10
    got = kd_kl(student, teacher, T)
    assert got > 0 and torch.allclose(got, direct, atol=1e-6)
    kl = F.kl_div(F.log_softmax(student / T, -1).view(10, 11), p_t.view(10, 11), reduction='batchmean')
    assert torch.allclose(got, kl, atol=1e-6)
    # lm_logits' CPU layout, (vocab, B*T) in memory, takes the other log-softmax branch
    vocab_major = student.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    assert vocab_major.stride(-1) != 1 and torch.allclose(kd_kl(vocab_major, teacher, T), direct, atol=1e-6)
    cos = F.cosine_embedding_loss(hs.view(10, 8), ht.view(10, 8), torch.ones(10))  # HF's distiller's cosine term
    assert torch.allclose(cosine_loss(hs, ht), cos, atol=1e-6)
    lm = torch.tensor(3.0)
    # DistilGPT2's weights
    got = distill_loss(lm, (student, hs), (teacher, ht), temperature=T, alpha_ce=5.0, alpha_clm=2.0,
                       alpha_cos=1.0)
    assert torch.allclose(got, 5.0 * T * T * kl + 2.0 * lm + 1.0 * cos, atol=1e-5)
    # the (1 - alpha) LM + alpha T^2 KL form of Hinton et al.
    got = distill_loss(lm, (student, hs), (teacher, ht), temperature=T, alpha_ce=0.25, alpha_clm=0.75,
                       alpha_cos=0.0)
    assert torch.allclose(got, 0.75 * lm + 0.25 * T * T * direct)
