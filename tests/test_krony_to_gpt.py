"""krony_to_gpt.py against independent references: HF GPT2LMHeadModel's logits on the exported
weights, torch.kron, GPT-2's tokenizer, and the CLI's exit codes and directories."""
import os
from dataclasses import asdict

import pytest
import torch

import tokenizer
from tokenizer import get_encoding
from factored import kron_reference
from krony_to_gpt import FACTORED_CODE, export, to_dense_gpt, to_hf
from checkpoint import load_model, save_checkpoint
from model import GPT, GPTConfig, with_mlp
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
    return kron_reference(lin.A, lin.B, lin.scale)


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
    model = GPT(GPTConfig(n_layer=1, n_head=4, n_embd=32, block_size=16, vocab_size=100,
                          time_weighting='toeplitz_query'))
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
    tw = GPT(GPTConfig(n_layer=1, n_head=4, n_embd=32, block_size=16, vocab_size=100, time_mixing='learned'))
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
    from outputs import DIR_MARK
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


# ---------------------------------------------------------------- --factored: the factors kept

def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


@pytest.mark.parametrize('kind', KINDS)
def test_factored_export_holds_the_trained_tensors(kind, tmp_path):
    """model.safetensors holds A, B, scale (or U, V) bit for bit; the project reads the directory
    back to the same model; the directory is smaller than the folded one by the MLP's bytes."""
    import json
    from safetensors.torch import load_file
    model = tiny(kind)
    export(model, tmp_path / 'fact', factored=True)
    export(model, tmp_path / 'dense')
    config = json.loads((tmp_path / 'fact' / 'config.json').read_text())
    assert config['model_type'] == 'krony_gpt2' and config['mlp'] == model.config.mlp
    assert config['auto_map']['AutoModelForCausalLM'] == 'modeling_krony.KronyGPT2LMHeadModel'
    for name in FACTORED_CODE:
        assert (tmp_path / 'fact' / name).read_text() == open(os.path.join(ROOT, name)).read()
    sd = load_file(tmp_path / 'fact' / 'model.safetensors')
    for name, lin in model.mlp_linears():
        for k, v in lin.state_dict().items():
            assert torch.equal(sd[f'{name}.{k}'], v), f'{name}.{k}'
    loaded, ckpt = load_model(str(tmp_path / 'fact'))
    assert ckpt is None and loaded.config == model.config
    idx = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model(idx)[0])
    saved = 4 * (GPT(with_mlp(model.config, 'dense')).mlp_params() - model.mlp_params())
    size = lambda d: os.path.getsize(tmp_path / d / 'model.safetensors')  # noqa: E731
    assert abs(size('dense') - size('fact') - saved) < 4096  # the safetensors headers differ a little


def test_factored_lowrank_export_of_inrank_ranks(tmp_path):
    """InRank grows each matrix's rank on its own: the export holds one rank, the largest in use,
    with zeros beyond each matrix's own, so it computes the trained function."""
    model = tiny('lowrank', lowrank_rank=12)
    for i, (_, lin) in enumerate(model.mlp_linears()):
        lin.set_active_rank(3 + 2 * i)
    hf = export(model, tmp_path / 'fact', factored=True)
    assert hf.config.lowrank_rank == 3 + 2 * 3
    loaded, _ = load_model(str(tmp_path / 'fact'))
    idx = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        assert (loaded(idx)[0] - model(idx)[0]).abs().max() < 1e-5
    for (_, a), (_, b) in zip(model.mlp_linears(), loaded.mlp_linears()):
        assert torch.allclose(a.dense_weight(), b.dense_weight(), rtol=0, atol=1e-6)


def test_factored_export_refuses_attention_tricks(tmp_path):
    model = GPT(GPTConfig(n_layer=1, n_head=4, n_embd=32, block_size=16, vocab_size=100, time_mixing='shift'))
    with pytest.raises(ValueError, match='time_mixing'):
        export(model, tmp_path / 'fact', factored=True)
    assert not (tmp_path / 'fact').exists()


def fresh_load(model_dir, request, workdir, python=None):
    """Start tests/hf_load.py on model_dir in a fresh process outside the project; returns a
    function that waits for it and gives its JSON result."""
    import json
    import shutil
    import subprocess
    import sys
    workdir.mkdir(exist_ok=True)
    script = shutil.copy(os.path.join(ROOT, 'tests', 'hf_load.py'), workdir / 'hf_load.py')
    (workdir / 'request.json').write_text(json.dumps(request))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(HF_HUB_OFFLINE='1', HF_MODULES_CACHE=str(workdir / 'modules'))
    proc = subprocess.Popen([python or sys.executable, script, str(model_dir), 'request.json', 'result.json'],
                            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result():
        out, err = proc.communicate()
        assert proc.returncode == 0, err[-3000:]
        return json.loads((workdir / 'result.json').read_text())
    return result


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
    """Factored and folded exports of three models, each loaded by tests/hf_load.py in fresh
    processes (started together, so their imports overlap): a Kronecker model with GPT-2's
    vocabulary (through the command line), a character model with an unknown character, a low-rank
    model. {name: (model, tokenizer, request, {'fact': result, 'dense': result}, dir)}"""
    import subprocess
    import sys
    from tokenizer import CharTokenizer, GPT2BPE
    d = tmp_path_factory.mktemp('factored')
    with open(os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.valid.tokens'), encoding='utf-8') as f:
        chars = CharTokenizer.build(f.read(20_000), unk=True)
    cases = {'kron': (tiny('kron_scalers', vocab_size=50257, block_size=64), GPT2BPE(), "Kronecker products, 40%."),
             'char': (tiny('kron', vocab_size=chars.vocab_size, block_size=64), chars, " = Valkyria 日本 ∮ Chronicles"),
             'lowrank': (tiny('lowrank', vocab_size=50257, block_size=64), GPT2BPE(), " The history of")}
    runs = {}
    for name, (model, tok, text) in cases.items():
        ckpt = d / f'{name}.pt'
        extra = {'vocab': tok.to_meta()} if isinstance(tok, CharTokenizer) else {}
        save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config), **extra}, ckpt)
        if name == 'kron':  # the command line once; the others in this process, which is quicker
            out = subprocess.run([sys.executable, 'krony_to_gpt.py', str(ckpt), str(d / f'{name}_fact'), '--factored'],
                                 cwd=ROOT, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            assert 'KronyGPT2LMHeadModel' in out.stdout and 'trust_remote_code=True' in out.stdout
        else:
            export(load_model(str(ckpt))[0], d / f'{name}_fact', tok=tok, factored=True)
        export(load_model(str(ckpt))[0], d / f'{name}_dense', tok=tok)
        g = torch.Generator().manual_seed(1)
        V = model.config.vocab_size
        request = dict(tokens=torch.randint(0, V, (2, 64), generator=g).tolist(),
                       prompt=torch.randint(0, V, (1, 8), generator=g).tolist(), new_tokens=50, text=text)
        runs[name] = (model, tok, request, {how: fresh_load(d / f'{name}_{how}', request, d / f'run_{name}_{how}')
                                            for how in ('fact', 'dense')})
    yield {name: (model, tok, request, {how: wait() for how, wait in waits.items()}, d)
           for name, (model, tok, request, waits) in runs.items()}


@pytest.mark.parametrize('name', ['kron', 'char', 'lowrank'])
def test_factored_export_loads_alone_and_equals_the_folded_one(exports, name):
    """In a process that cannot import this project: AutoConfig, AutoModelForCausalLM and
    AutoTokenizer load the factored export offline; its logits equal the folded export's within
    1e-5 and the project model's; greedy generate() of 50 tokens with transformers' KV cache gives
    the folded export's tokens and the project's own KV-cache generation; save_pretrained of the
    loaded model loads again."""
    import json
    model, tok, request, res, d = exports[name]
    fact, dense = res['fact'], res['dense']
    assert fact['model_class'] == 'KronyGPT2LMHeadModel' and fact['mlp'] == model.config.mlp
    assert dense['model_class'] == 'GPT2LMHeadModel' and fact['params'] < dense['params']
    lf, ld = torch.tensor(fact['logits']), torch.tensor(dense['logits'])
    # fp32 rounding grows with the logits' size: 1e-5 of the largest (tiny() draws large weights,
    # so logits reach 5-15 and the low-rank model's differ from its folded export's by 2.7e-5)
    tol = 1e-5 * max(1.0, ld.abs().max().item())
    assert ld.abs().max() > 1  # far from zero, so the tolerance is a real check
    assert (lf - ld).abs().max() < tol
    with torch.no_grad():
        assert (lf - model(torch.tensor(request['tokens']))[0]).abs().max() < tol
    assert fact['generated'] == dense['generated'] and len(fact['generated'][0]) == 8 + 50
    ours = model.generate(torch.tensor(request['prompt']), 50, top_k=1, use_cache=True)
    assert fact['generated'] == ours.tolist()
    assert fact['resaved_diff'] == 0
    for r in (fact, dense):  # the tokenizer: the model's ids, its context length, a class 4.x has too
        assert r['text_ids'] == tok.encode(request['text'])
        assert r['model_max_length'] == model.config.block_size
    for how in ('fact', 'dense'):
        config = json.loads((d / f'{name}_{how}' / 'tokenizer_config.json').read_text())
        assert config['tokenizer_class'] in ('GPT2Tokenizer', 'PreTrainedTokenizerFast')
    if name == 'char':  # the text has characters outside the vocabulary: the unknown token for each
        assert tok.stoi[tok.unk] in fact['text_ids']


def test_factored_export_directory_is_smaller(tmp_path):
    """The whole directory, code included, for a model whose MLP holds most weights, with the 81M
    model's structure (A: n_embd x n_embd, B: 1 x 4): smaller by the MLP's saving less the code.
    (GPT-2 small's 81M figure is bench.py's decode table.)"""
    model = tiny('dense', n_embd=128, mlp='kron', kron_dim1=128, kron_dim2=128, kron_factors=1)
    export(model, tmp_path / 'fact', factored=True)
    export(model, tmp_path / 'dense')
    fact, dense = dir_bytes(tmp_path / 'fact'), dir_bytes(tmp_path / 'dense')
    saved = 4 * (GPT(with_mlp(model.config, 'dense')).mlp_params() - model.mlp_params())
    code = sum(os.path.getsize(os.path.join(ROOT, n)) for n in FACTORED_CODE)
    assert abs(dense - fact - (saved - code)) < 8192  # config.json and the headers differ a little
    assert fact < 0.6 * dense


def test_factored_export_through_the_project_scripts(exports, tmp_path):
    """perplexity_eval.py and sample.py read a factored export as they read its checkpoint."""
    import json
    import subprocess
    import sys
    model, tok, request, _, d = exports['char']
    run = lambda *a: subprocess.run([sys.executable, *map(str, a)], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
    window = " = Valkyria Chronicles = \n\n Senjō no Valkyria 3"
    (tmp_path / 'w.txt').write_text(window, encoding='utf-8')
    scores = {}
    for src in (d / 'char_fact', d / 'char.pt'):
        out = run('perplexity_eval.py', src, '--text_file', tmp_path / 'w.txt', '--json', tmp_path / f'{src.name}.json')
        assert out.returncode == 0, out.stderr
        scores[src.name] = json.loads((tmp_path / f'{src.name}.json').read_text())['results']['w.txt']
    assert scores['char_fact']['nll'] == pytest.approx(scores['char.pt']['nll'], rel=1e-6)
    assert scores['char_fact']['tokenizer'] == f'characters ({tok.vocab_size})'
    outs = [run('sample.py', src, '--prompt= = Valk', '--num_samples=2', '--max_new_tokens=20', '--seed=5')
            for src in (d / 'char_fact', d / 'char.pt')]
    assert outs[0].returncode == 0, outs[0].stderr
    assert outs[0].stdout == outs[1].stdout


def test_character_export_without_unknown_token_fails_in_one_line(tmp_path):
    """A vocabulary without the unknown character: text outside it is a clear error in
    perplexity_eval.py and sample.py on the export, as on the checkpoint, not a traceback."""
    import subprocess
    import sys
    from tokenizer import CharTokenizer
    chars = CharTokenizer.build("abcdefghijklmnopqrstuvwxyz .\n")
    model = tiny('kron', vocab_size=chars.vocab_size, block_size=32)
    ckpt = tmp_path / 'c.pt'
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config), 'vocab': chars.to_meta()}, ckpt)
    run = lambda *a: subprocess.run([sys.executable, *map(str, a)], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
    for flags in ([], ['--factored']):
        out = tmp_path / f"hf{''.join(flags)}"
        assert run('krony_to_gpt.py', ckpt, out, *flags).returncode == 0
        (tmp_path / 'w.txt').write_text("the cat sat. The End", encoding='utf-8')
        for argv in (['perplexity_eval.py', out, '--text_file', tmp_path / 'w.txt'],
                     ['sample.py', out, '--prompt=The End', '--max_new_tokens=3']):
            res = run(*argv)
            assert_one_line_error(res.returncode, res.stderr, ["outside the model's vocabulary", "'E'"])


def test_kron_decompose_reads_a_factored_export(tmp_path):
    """kron_decompose.py --from a factored export of a dense model gives the checkpoint it gives
    from that model's own checkpoint; a Kronecker export is refused as a Kronecker checkpoint is."""
    import kron_decompose
    model = tiny('dense')
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, tmp_path / 'd.pt')
    export(model, tmp_path / 'fact', factored=True)
    for src in ('d.pt', 'fact'):
        kron_decompose.main(['8', '16', '2', '--from', str(tmp_path / src), '--out', str(tmp_path / f'{src}.kron.pt')])
    a, b = (torch.load(tmp_path / f'{s}.kron.pt', weights_only=False) for s in ('d.pt', 'fact'))
    assert a['model_args'] == b['model_args'] and a['model'].keys() == b['model'].keys()
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    export(tiny('kron'), tmp_path / 'kron_fact', factored=True)
    with pytest.raises(ValueError, match="mlp='kron'; decompose a dense model"):
        kron_decompose.main(['8', '16', '1', '--from', str(tmp_path / 'kron_fact'), '--out', str(tmp_path / 'x.pt')])
