"""minGPT-tuned's time-weighting and time-mixing (attention_tricks.py): each form against an
explicit formula (minGPT-tuned's full matrix, its README's Toeplitz x per-key form with its index
convention, this project's Toeplitz x per-query form, the fixed and the learned shift), identity
at initialisation, weight decay, parameter counts, unknown forms and the HF export's refusal."""
import pytest
import torch
from transformers import GPT2LMHeadModel

from attention_tricks import CausalSelfAttention
from krony_to_gpt import check_representable
from model import GPT, GPTConfig

TINY = dict(block_size=32, vocab_size=97, n_layer=2, n_head=4, n_embd=32)
FORMS = ['full', 'toeplitz', 'toeplitz_query']


@pytest.mark.parametrize('tricks', [dict(time_weighting=w) for w in FORMS] + [
    dict(time_mixing='learned'), dict(time_weighting='full', time_mixing='learned'),
    dict(time_weighting='toeplitz_query', time_mixing='learned')])
def test_tricks_at_init_leave_logits_unchanged(tricks):
    torch.manual_seed(0)
    plain = GPT(GPTConfig(**TINY)).eval()
    tuned = GPT(GPTConfig(**TINY, **tricks)).eval()
    missing, unexpected = tuned.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all('.attn.time_' in k for k in missing) and not unexpected
    idx = torch.randint(0, TINY['vocab_size'], (3, 20))
    with torch.no_grad():
        torch.testing.assert_close(tuned(idx)[0], plain(idx)[0], rtol=0, atol=1e-6)


def test_fixed_shift_changes_the_function_and_adds_no_parameter():
    torch.manual_seed(0)
    plain = GPT(GPTConfig(**TINY)).eval()
    shifted = GPT(GPTConfig(**TINY, time_mixing='shift')).eval()
    shifted.load_state_dict(plain.state_dict())  # strict: no tensor of its own
    idx = torch.randint(0, TINY['vocab_size'], (2, 12))
    with torch.no_grad():
        a, b = plain(idx)[0], shifted(idx)[0]
    assert (a - b).abs().max() > 1e-3  # unlike the learned mix, the shift is on from the start


def test_pretrained_weights_load_with_the_tricks_on(tiny_hf_dir):
    hf = GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    idx = torch.randint(0, 50257, (2, 17))
    for tricks in (dict(time_weighting='toeplitz_query', time_mixing='learned'), dict(time_weighting='full')):
        model = GPT.from_pretrained(tiny_hf_dir, **tricks).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)


def randomised(form, seed):
    torch.manual_seed(seed)
    attn = CausalSelfAttention(GPTConfig(**TINY, time_weighting=form)).eval()
    with torch.no_grad():
        for n, p in attn.named_parameters():
            if n.startswith('time_'):
                p.uniform_(-1.5, 1.5)
    return attn


def explicit_weight(attn, form, h, i, j):
    """W[h, i, j] for key j <= query i, written from each form's definition."""
    L = TINY['block_size']
    if form == 'full':
        return attn.time_weighting[h, i, j]
    if form == 'toeplitz':  # minGPT-tuned's README: entry L-1-d for distance d, times the key's factor
        return attn.time_weight[h, L - 1 - (i - j)] * attn.time_bias[h, 0, j]
    return attn.time_w[h, i - j] * attn.time_gamma[h, i]  # this project's: entry d, times the query's factor


@pytest.mark.parametrize('form', FORMS)
@pytest.mark.parametrize('T', [11, 32])
def test_time_weights_equal_the_forms_definition(form, T):
    attn = randomised(form, 1)
    got = attn.time_weights(T)
    for h in range(TINY['n_head']):
        for i in range(T):
            for j in range(T):
                if j <= i:
                    assert got[h, i, j] == explicit_weight(attn, form, h, i, j), (h, i, j)
                elif form != 'full':
                    assert got[h, i, j] == 0  # the Toeplitz constructions are lower triangular


def test_toeplitz_index_convention_and_per_key_factor():
    attn = CausalSelfAttention(GPTConfig(**TINY, time_weighting='toeplitz'))
    L = TINY['block_size']
    with torch.no_grad():
        attn.time_weight.copy_(torch.arange(L, dtype=torch.float).expand(TINY['n_head'], L))
        attn.time_bias.fill_(1)
        attn.time_bias[:, 0, 2] = 10
    W = attn.time_weights(5)[0]
    # the diagonal (distance 0) uses the last entry L-1, distance d the entry L-1-d, at any T
    assert W.diagonal().tolist() == [L - 1.0, L - 1.0, 10.0 * (L - 1), L - 1.0, L - 1.0] and W[4, 0] == L - 1 - 4
    # the factor belongs to the key (column 2), for every query that sees it
    assert W[2:, 2].tolist() == [10.0 * (L - 1 - (i - 2)) for i in range(2, 5)]
    assert W[3, 1] == L - 1 - 2


@pytest.mark.parametrize('form', FORMS)
def test_time_weighted_attention_equals_explicit_computation(form):
    attn = randomised(form, 2)
    x = torch.randn(2, 9, TINY['n_embd'])
    B, T, C = x.shape
    H = TINY['n_head']
    hs = C // H
    q, k, v = (x @ attn.c_attn.weight.t() + attn.c_attn.bias).split(C, dim=2)
    y = torch.zeros(B, T, C)
    for h in range(H):
        sl = slice(h * hs, (h + 1) * hs)
        for i in range(T):
            scores = (k[:, :i + 1, sl] @ q[:, i, sl, None]).squeeze(-1) / hs ** 0.5  # (B, i+1)
            p = torch.softmax(scores, dim=-1)  # the weights multiply these, no renormalisation
            w = torch.stack([explicit_weight(attn, form, h, i, j) for j in range(i + 1)])
            y[:, i, sl] = ((p * w)[..., None] * v[:, :i + 1, sl]).sum(1)
    expected = y @ attn.c_proj.weight.t() + attn.c_proj.bias
    with torch.no_grad():
        torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_per_key_factor_can_silence_a_key():
    # a zero factor on key 0 takes its value out of every query's sum, which a factor per query
    # cannot do without silencing whole queries
    attn = CausalSelfAttention(GPTConfig(**TINY, time_weighting='toeplitz'))
    with torch.no_grad():
        attn.time_bias[:, 0, 0] = 0
    W = attn.time_weights(6)
    assert torch.all(W[:, :, 0] == 0) and torch.all(W[:, 1:, 1:].tril() == torch.ones(5, 5).tril())


def test_fixed_shift_is_minGPT_tuned_shift():
    attn = CausalSelfAttention(GPTConfig(**TINY, time_mixing='shift'))
    assert not list(attn.parameters(recurse=False))
    x = torch.randn(2, 7, TINY['n_embd'])
    half = TINY['n_embd'] // 2
    expected = x.clone()
    expected[:, 0, :half] = 0
    expected[:, 1:, :half] = x[:, :-1, :half]
    assert torch.equal(attn.time_shift(x), expected)
    learned = CausalSelfAttention(GPTConfig(**TINY, time_mixing='learned', time_mix_init=1.0))
    assert torch.equal(learned.time_shift(x), expected)  # the learned mix at 1 starts as the shift


def test_learned_mixing_at_zero_is_identity_and_mixes_linearly():
    attn = CausalSelfAttention(GPTConfig(**TINY, time_mixing='learned'))
    x = torch.randn(2, 7, TINY['n_embd'])
    assert torch.equal(attn.time_shift(x), x)
    with torch.no_grad():
        attn.time_mix.fill_(0.25)
    half = TINY['n_embd'] // 2
    prev = torch.cat([torch.zeros(2, 1, half), x[:, :-1, :half]], dim=1)
    torch.testing.assert_close(attn.time_shift(x)[..., :half], 0.75 * x[..., :half] + 0.25 * prev)


@pytest.mark.parametrize('form,decayed', [('full', True), ('toeplitz_query', False)])
def test_tricks_are_learnable_and_decayed_as_their_origin(form, decayed):
    torch.manual_seed(3)
    model = GPT(GPTConfig(**TINY, time_weighting=form, time_mixing='learned'))
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-2, betas=(0.9, 0.95))
    decay = {id(p) for g in opt.param_groups if g['weight_decay'] > 0 for p in g['params']}
    weighting = {id(p) for n, p in model.named_parameters() if '.time_' in n and '.time_mix' not in n}
    mixing = {id(p) for n, p in model.named_parameters() if '.time_mix' in n}
    assert len(mixing) == TINY['n_layer'] and not mixing & decay  # the project's learned mix: never decayed
    assert weighting and (weighting <= decay if decayed else not weighting & decay)
    # everything else as before: matrices decayed, LayerNorms and biases not
    assert id(model.transformer.h[0].attn.c_attn.weight) in decay and id(model.transformer.ln_f.weight) not in decay
    idx = torch.randint(0, TINY['vocab_size'], (4, 16))
    _, loss = model(idx, idx)
    loss.backward()
    for n, p in model.named_parameters():
        if '.time_' in n:
            assert p.grad is not None and p.grad.abs().sum() > 0, n


# minGPT-tuned's parameter names per form, and its trainer's rule: a name containing 'bias' is not
# decayed, every other one is; this project's forms ('toeplitz_query', the learned mix) never are
MINGPT_TUNED_NAMES = {'full': ['time_weighting'], 'toeplitz': ['time_weight', 'time_bias']}


@pytest.mark.parametrize('form,mixing', [(w, m) for w in ['', *FORMS] for m in ['', 'shift', 'learned'] if w or m])
def test_decayed_trick_parameters_follow_their_origins_rule(form, mixing):
    model = GPT(GPTConfig(**TINY, time_weighting=form, time_mixing=mixing))
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-2, betas=(0.9, 0.95))
    decay = {id(p) for g in opt.param_groups if g['weight_decay'] > 0 for p in g['params']}
    tricks = {n.rsplit('.', 1)[-1] for n in dict(model.named_parameters()) if '.attn.time_' in n}
    origin = MINGPT_TUNED_NAMES.get(form, [])
    if origin:
        assert tricks - {'time_mix'} == set(origin)  # the rule below applies to minGPT-tuned's own names
    expected = {n for n in origin if 'bias' not in n}
    decayed = {n.rsplit('.', 1)[-1] for n, p in model.named_parameters()
               if '.attn.time_' in n and id(p) in decay}
    assert decayed == expected
    assert expected == {'full': {'time_weighting'}, 'toeplitz': {'time_weight'}}.get(form, set())


def test_parameter_counts_of_the_forms():
    # minGPT-tuned's README model: 3 layers, 8 heads, 512 wide, block 128, 65 characters
    shape = dict(n_layer=3, n_head=8, n_embd=512, block_size=128, vocab_size=65)
    counts = {w: GPT(GPTConfig(**shape, time_weighting=w, time_mixing='shift')).num_params() for w in ['', *FORMS]}
    base = counts['']
    # minGPT (9,590,272) unties its output layer (65 x 512 = 33,280); the full matrices add 3 * 8 * 128^2
    assert base == 9_590_272 - 65 * 512
    assert counts['full'] - base == 3 * 8 * 128 * 128 == 393_216 == 9_983_488 - 9_590_272
    assert counts['toeplitz'] - base == counts['toeplitz_query'] - base == 3 * 2 * 8 * 128


def test_unknown_forms_are_refused():
    with pytest.raises(ValueError, match="time_weighting='circulant' is not one of"):
        GPTConfig(time_weighting='circulant')
    with pytest.raises(ValueError, match="time_mixing='yes' is not one of"):
        GPTConfig(time_mixing='yes')


@pytest.mark.parametrize('tricks', [dict(time_weighting=w) for w in FORMS] +
                         [dict(time_mixing=m) for m in ('shift', 'learned')])
def test_hf_export_refuses_every_form(tricks):
    with pytest.raises(ValueError, match=f"{next(iter(tricks))}='{next(iter(tricks.values()))}'"):
        check_representable(GPTConfig(**TINY, **tricks))
    check_representable(GPTConfig(**TINY))


def test_comparison_script_quick_runs_every_form(tmp_path):
    import json
    import subprocess
    import sys
    from conftest import ROOT
    r = subprocess.run([sys.executable, 'script/mingpt_tricks.py', '--quick', '--out', str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row['name']: row for row in json.load(open(tmp_path / 'results.json'))['rows']}
    assert list(rows) == ['baseline', 'mingpt_tuned', 'readme_toeplitz', 'project', 'project_mix1']
    # the tiny model: 1 layer, 2 heads, 32 wide, block 32 (full: 2 * 32^2, Toeplitz forms: 2 * 2 * 32,
    # the learned mix 32 / 2, the fixed shift nothing)
    base = rows['baseline']['params']
    assert rows['mingpt_tuned']['params'] - base == 2 * 32 * 32
    assert rows['readme_toeplitz']['params'] - base == 2 * 2 * 32
    assert rows['project']['params'] - base == 2 * 2 * 32 + 16
    assert rows['project_mix1']['params'] - rows['project']['params'] == 0
    assert all(len(row['evals']) == 2 for row in rows.values())
    assert '| minGPT-tuned: full + shift |' in (tmp_path / 'results.md').read_text()
