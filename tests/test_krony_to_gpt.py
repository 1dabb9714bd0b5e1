"""krony_to_gpt.py against independent references: HF GPT2LMHeadModel's logits on the exported
weights, torch.kron, GPT-2's tokenizer, and the CLI's exit codes and directories."""
import os
from dataclasses import asdict

import pytest
import torch

import tokenizer
from tokenizer import get_encoding
from krony_to_gpt import export, to_dense_gpt, to_hf
from checkpoint import load_model, save_checkpoint
from model import GPT, GPTConfig
from cli_runs import CliRuns, assert_one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KINDS = {
    'dense': dict(mlp='dense'),
    'kron': dict(mlp='kron', kron_dim1=8, kron_dim2=16, kron_factors=2),
    'kron_scalers': dict(mlp='kron', kron_dim1=32, kron_dim2=32, kron_factors=3, kron_scalers=True),
    'kron_no_bias': dict(mlp='kron', kron_dim1=16, kron_dim2=128, kron_factors=1, bias=False),
    'lowrank': dict(mlp='lowrank', lowrank_rank=8),
}


def tiny(kind, seed=0, vocab_size=100, **kw):
    """A tiny GPT with every parameter random (scalers and biases too), so nothing is trivially 1 or 0."""
    torch.manual_seed(seed)
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=vocab_size, **KINDS[kind])
    model = GPT(GPTConfig(**{**args, **kw}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('.scale'):
                p.uniform_(0.5, 2.0)
            elif name.endswith(('.A', '.B', '.U', '.V')):
                p.normal_(0, 0.4)
            elif 'ln_' in name and name.endswith('.weight'):
                p.normal_(1, 0.2)
            elif 'wte' in name:
                p.normal_(0, 0.5)
            else:
                p.normal_(0, 0.1)
    return model.eval()


def kron_ref(lin):
    s = lin.scale if lin.scale is not None else torch.ones(lin.A.shape[0])
    return sum(s[f] * torch.kron(lin.A[f], lin.B[f]) for f in range(lin.A.shape[0]))


@pytest.mark.parametrize('kind', KINDS)
def test_hf_logits_equal_the_model(kind):
    model = tiny(kind)
    hf = to_hf(model)
    idx = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        ours, _ = model(idx)
        theirs = hf(idx).logits
    assert ours.abs().max() > 1  # logits far from zero, so 1e-4 is a real check
    assert (ours - theirs).abs().max() < 1e-4
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()


@pytest.mark.parametrize('kind', ['kron', 'kron_scalers', 'lowrank'])
def test_to_dense_gpt_folds_the_factors(kind):
    model = tiny(kind)
    dense = to_dense_gpt(model)
    assert dense.config.mlp == 'dense' and dense.lm_head.weight is dense.transformer.wte.weight
    for (name, lin), (_, d) in zip(model.mlp_linears(), dense.mlp_linears()):
        with torch.no_grad():
            ref = kron_ref(lin) if kind.startswith('kron') else lin.U @ lin.V
        assert torch.allclose(d.weight.t(), ref, rtol=0, atol=1e-6), name
        assert torch.equal(d.bias, lin.bias)
    idx = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        assert (model(idx)[0] - dense(idx)[0]).abs().max() < 1e-4
    assert dense.num_params() == GPT(GPTConfig(**{**asdict(model.config), **KINDS['dense']})).num_params()


def test_time_weighting_is_refused():
    model = GPT(GPTConfig(n_layer=1, n_head=4, n_embd=32, block_size=16, vocab_size=100, time_weighting=True))
    with pytest.raises(ValueError, match='time_weighting'):
        to_hf(model)


@pytest.mark.parametrize('kind', ['dense', 'kron_scalers', 'lowrank'])
def test_checkpoint_export_loads_with_auto_classes(kind, tmp_path):
    from transformers import AutoModelForCausalLM
    model = tiny(kind)
    path = tmp_path / 'ckpt.pt'
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, path)
    loaded, _ = load_model(str(path))
    export(loaded, tmp_path / 'hf')
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / 'hf').eval()
    idx = torch.randint(0, 100, (1, 16))
    with torch.no_grad():
        assert (model(idx)[0] - hf(idx).logits).abs().max() < 1e-4


def test_export_failure_leaves_nothing(tmp_path, monkeypatch):
    def broken():
        raise ValueError('tokenizer files missing')
    monkeypatch.setattr(tokenizer, 'gpt2_hf_tokenizer', broken)
    with pytest.raises(ValueError, match='tokenizer files missing'):
        export(tiny('kron'), tmp_path / 'new', tok=tokenizer.GPT2BPE())
    assert os.listdir(tmp_path) == []
    # with --force a failure keeps the previous directory as it was
    (tmp_path / 'old').mkdir()
    (tmp_path / 'old' / 'keep.txt').write_text('previous export')
    with pytest.raises(ValueError, match='tokenizer files missing'):
        export(tiny('kron'), tmp_path / 'old', force=True, tok=tokenizer.GPT2BPE())
    assert sorted(os.listdir(tmp_path)) == ['old'] and os.listdir(tmp_path / 'old') == ['keep.txt']


def test_force_replaces_and_refuses_without(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'stale.txt').write_text('old')
    with pytest.raises(ValueError, match='not empty; pass --force'):
        export(tiny('dense'), out)
    export(tiny('dense'), out, force=True)
    assert 'stale.txt' not in os.listdir(out) and 'config.json' in os.listdir(out)
    assert sorted(os.listdir(tmp_path)) == ['out']


# ---------------------------------------------------------------- the command line

@pytest.fixture(scope='module', autouse=True)
def cli(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    model = tiny('kron_scalers', vocab_size=50257, block_size=32)  # GPT-2's vocabulary, for the tokenizer
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, d / 'kron.pt')
    tw = GPT(GPTConfig(n_layer=1, n_head=4, n_embd=32, block_size=16, vocab_size=100, time_mixing=True))
    save_checkpoint({'model': tw.state_dict(), 'model_args': asdict(tw.config)}, d / 'tw.pt')
    (d / 'notes.txt').write_text('not a checkpoint\n')
    (d / 'full').mkdir()
    (d / 'full' / 'mine.txt').write_text('do not touch')
    good = {'export': ['krony_to_gpt.py', str(d / 'kron.pt'), str(d / 'hf')]}
    bad = {name: ['krony_to_gpt.py', str(d / ck), str(d / out)] for name, (ck, out) in {
        'not_empty': ('kron.pt', 'full'),
        'missing': ('missing.pt', 'out_missing'),
        'text': ('notes.txt', 'out_text'),
        'time_mixing': ('tw.pt', 'out_tw'),
    }.items()}
    runs = CliRuns(good, bad, real='not_empty')
    runs.dir, runs.model = d, model
    yield runs
    for p in runs.procs.values():
        p.communicate()


def test_cli_exports_a_directory_that_loads_offline(cli):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    rc, out, err = cli.wait('export')
    assert rc == 0, err
    hf_dir = cli.dir / 'hf'
    assert {'config.json', 'model.safetensors', 'tokenizer.json'} <= set(os.listdir(hf_dir))
    tok = AutoTokenizer.from_pretrained(hf_dir)
    hf = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    text = "Kronecker products compress GPT-2's MLP by 40%."
    ids = tok(text)['input_ids']
    assert ids == get_encoding().encode_ordinary(text)
    idx = torch.tensor([ids])
    with torch.no_grad():
        assert (cli.model(idx)[0] - hf(idx).logits).abs().max() < 1e-4


@pytest.mark.parametrize('case,out,expected', [
    ('not_empty', 'full', ['not empty', '--force']),
    ('missing', 'out_missing', ['missing.pt', 'does not exist']),
    ('text', 'out_text', ['notes.txt']),
    ('time_mixing', 'out_tw', ['time_mixing']),
])
def test_cli_bad_input(cli, case, out, expected):
    assert_one_line_error(*cli.bad(case), expected)
    out = cli.dir / out
    if case == 'not_empty':
        assert os.listdir(out) == ['mine.txt'] and (out / 'mine.txt').read_text() == 'do not touch'
    else:
        assert not out.exists()
    assert not [f for f in os.listdir(cli.dir) if '.tmp' in f]


def test_character_model_export_and_hf_loss_equal_perplexity_eval(tmp_path):
    """A character checkpoint (its vocabulary stored, as train.py does) through krony_to_gpt.py's
    command line: AutoTokenizer + AutoModelForCausalLM load it offline, with the checkpoint's ids,
    and HF's own loss on a window equals perplexity_eval.py's for that window."""
    import json
    import math
    import subprocess
    import sys
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tokenizer import CharTokenizer
    with open(os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.valid.tokens'), encoding='utf-8') as f:
        chars = CharTokenizer.build(f.read(20_000), unk=True)
    model = tiny('kron', vocab_size=chars.vocab_size, block_size=64)
    ckpt = tmp_path / 'char.pt'
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config), 'vocab': chars.to_meta()}, ckpt)
    run = lambda *a: subprocess.run([sys.executable, *map(str, a)], cwd=ROOT, capture_output=True, text=True)
    out = run('krony_to_gpt.py', ckpt, tmp_path / 'hf')
    assert out.returncode == 0, out.stderr
    assert f'tokenizer: characters ({chars.vocab_size})' in out.stdout
    window = " = Valkyria Chronicles = \n\n Senjō no Valkyria 3 : 日本 Unrecorded"
    (tmp_path / 'window.txt').write_text(window, encoding='utf-8')
    tok = AutoTokenizer.from_pretrained(tmp_path / 'hf')
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / 'hf').eval()
    ids = tok(window, add_special_tokens=False)['input_ids']
    assert ids == chars.encode(window) and len(ids) <= 64
    with torch.no_grad():
        hf_loss = hf(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    out = run('perplexity_eval.py', tmp_path / 'hf', '--text_file', tmp_path / 'window.txt', '--json', tmp_path / 'r.json')
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / 'r.json').read_text())['results']['window.txt']
    assert res['n_windows'] == 1 and res['nll'] == pytest.approx(hf_loss, rel=1e-5)
    assert res['tokenizer'].startswith('TokenizersBackend') or 'characters' in res['tokenizer']
    # bits per byte: the total in bits over the bytes of every character but the first
    n_bytes = len(window.encode('utf-8')) - len(window[0].encode('utf-8'))
    assert res['bpb'] == pytest.approx(hf_loss * (len(ids) - 1) / math.log(2) / n_bytes, rel=1e-5)
    # the checkpoint itself is scored with the same vocabulary
    out = run('perplexity_eval.py', ckpt, '--text_file', tmp_path / 'window.txt', '--json', tmp_path / 'c.json')
    assert out.returncode == 0, out.stderr
    res_ckpt = json.loads((tmp_path / 'c.json').read_text())['results']['window.txt']
    assert res_ckpt['nll'] == pytest.approx(hf_loss, rel=1e-4) and res_ckpt['tokenizer'] == f'characters ({chars.vocab_size})'


def test_a_killed_export_is_replaced_and_a_stranger_is_not(tmp_path):
    from files import DIR_MARK
    partial = tmp_path / 'hf.partial'  # what an export killed half-way leaves
    partial.mkdir()
    (partial / DIR_MARK).write_text('')
    (partial / 'model.safetensors').write_bytes(b'half')
    export(tiny('dense'), tmp_path / 'hf')
    assert sorted(os.listdir(tmp_path)) == ['hf']
    mine = tmp_path / 'other.partial'  # a folder of the user's that happens to have that name
    mine.mkdir()
    (mine / 'notes.txt').write_text('mine')
    with pytest.raises(ValueError, match='in the way'):
        export(tiny('dense'), tmp_path / 'other')
    assert os.listdir(mine) == ['notes.txt'] and not (tmp_path / 'other').exists()
