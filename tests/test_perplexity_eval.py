"""perplexity_eval.py: HF-identical rows, the paper's protocol against HF's own labels loss, the CLI."""
import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import perplexity_eval as pe
from tokenizer import get_encoding
from checkpoint import load_model, model_from_checkpoint, save_checkpoint
from model import GPT, GPTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -----------------------------------------------------------------------------
# data: local rows equal what HF's loaders give

@pytest.mark.parametrize('name,split,n_rows,num_bytes', [
    ('wiki103', 'test', 4358, 1_295_575), ('wiki103', 'valid', 3760, 1_154_751),
    ('wiki2', 'test', 4358, 1_270_947), ('wiki2', 'valid', 3760, 1_134_123),
    ('lambada_openai', 'test', 5153, 1_709_449)])
def test_rows_match_hf_split_sizes(name, split, n_rows, num_bytes):
    # num_bytes of the HF dataset cards: the UTF-8 bytes of every string plus a 4-byte arrow offset per row,
    # so it pins both the row boundaries and the "" of whitespace-only lines
    rows = pe.load_texts(name, split)
    assert len(rows) == n_rows
    assert sum(len(r.encode()) + 4 for r in rows) == num_bytes


def test_known_rows():
    wt103, wt2 = pe.load_texts('wiki103'), pe.load_texts('wiki2')
    assert wt103[:3] == ["", " = Robert Boulter = \n", ""]
    assert wt2[1] == " = Robert <unk> = \n"
    assert all(r == "" or r.endswith("\n") for r in wt103)
    lam, lam_openai = pe.load_texts('lambada'), pe.load_texts('lambada_openai')
    assert len(lam) == len(lam_openai) == 5153
    assert lam[0].startswith("in my palm is a clear stone , and inside it is a small ivory statuette .")
    assert lam_openai[0].startswith("In my palm is a clear stone, and inside it is a small ivory statuette.")
    assert not any("\n" in r for r in lam)
    # rows "", " = Robert <unk> = \n", "", ... joined with "\n\n" as in the paper's code
    assert pe.eval_text('wiki2').startswith("\n\n = Robert <unk> = \n\n\n\n\n Robert <unk> is an English")


def test_data_dir_and_missing(tmp_path, monkeypatch):
    # the archives' own folder name works; an explicit folder is used alone and a gap names both remedies
    (tmp_path / 'wikitext-2').mkdir()
    (tmp_path / 'wikitext-2' / 'wiki.test.tokens').write_text(" \n = A = \n \n b c \n", encoding='utf-8')
    assert pe.load_texts('wiki2', data_dir=str(tmp_path)) == ["", " = A = \n", "", " b c \n"]
    monkeypatch.setenv('KRONY_DATA_DIR', str(tmp_path))
    assert pe.data_source('wiki2') == str(tmp_path / 'wikitext-2' / 'wiki.test.tokens')
    with pytest.raises(ValueError, match=r'--data_dir.*KRONY_DATA_DIR.*datasets'):
        pe.load_texts('wiki103')
    with pytest.raises(ValueError, match='unknown dataset'):
        pe.load_texts('ptb')


@pytest.fixture
def fresh_probe(monkeypatch):
    for var in ('HF_DATASETS_OFFLINE', 'HF_HUB_OFFLINE'):
        monkeypatch.delenv(var, raising=False)
    probe = pe.hub_reachable  # a test may monkeypatch it away
    probe.cache_clear()
    yield
    probe.cache_clear()


def test_hub_probe(fresh_probe, monkeypatch):
    # a listening socket stands in for the hub; a closed port and the offline flag answer False at once
    import socket
    with socket.socket() as server:
        server.bind(('127.0.0.1', 0))
        server.listen()
        monkeypatch.setenv('HF_ENDPOINT', f"http://127.0.0.1:{server.getsockname()[1]}")
        assert pe.hub_reachable() is True
    pe.hub_reachable.cache_clear()
    assert pe.hub_reachable() is False  # the port is closed now
    pe.hub_reachable.cache_clear()
    monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
    monkeypatch.setenv('HF_ENDPOINT', 'http://127.0.0.1:1')
    assert pe.hub_reachable() is False


def test_hub_path_calls_load_dataset(fresh_probe, monkeypatch):
    # with the hub up, rows come from datasets.load_dataset with HF's names for the configs and splits
    import datasets
    calls = []

    def fake_load_dataset(repo, config, split):
        calls.append((repo, config, split))
        return {'text': ['a\n', '']}
    monkeypatch.setattr(pe, 'hub_reachable', lambda: True)
    monkeypatch.setattr(datasets, 'load_dataset', fake_load_dataset)
    assert pe.eval_text('wiki103', 'valid') == 'a\n\n\n'
    pe.load_texts('lambada')
    pe.load_texts('lambada_openai')
    assert calls == [('Salesforce/wikitext', 'wikitext-103-v1', 'validation'), ('cimec/lambada', None, 'test'),
                     ('EleutherAI/lambada_openai', 'default', 'test')]
    assert pe.data_source('wiki2') == 'hf:Salesforce/wikitext:wikitext-2-v1'


# -----------------------------------------------------------------------------
# the protocol

def hf_guide_windows(n, max_length, stride):
    """The label masks of the HF perplexity guide's loop, after the model's one-token shift."""
    masks, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        trg_len = end - prev_end
        labels = torch.arange(begin, end)
        labels[:-trg_len] = -100
        masks.append(labels[1:][labels[1:] != -100].tolist())  # token positions actually predicted
        prev_end = end
        if end == n:
            break
    return masks


@pytest.mark.parametrize('n,max_length,stride', [(1000, 128, 128), (1025, 128, 128), (1000, 128, 64),
                                                 (1000, 128, 1), (90, 128, 128), (257, 128, 100)])
def test_window_spans_follow_hf_guide(n, max_length, stride):
    spans = pe.window_spans(n, max_length, stride)
    ours = [list(range(e - k, e)) for _, e, k in spans]
    assert ours == [m for m in hf_guide_windows(n, max_length, stride) if m]
    scored = [t for m in ours for t in m]
    if stride < max_length:  # sliding: every token but the first is scored exactly once
        assert scored == list(range(1, n))
    else:  # disjoint windows: all but each window's first token
        assert scored == [t for t in range(n) if t % stride]


@pytest.fixture(scope='module')
def wiki_ids():
    # real text: the start of the paper's WikiText-103 evaluation text; 1000 % 128 != 1, so HF's loop
    # has no empty last window
    return pe.tokenize(pe.eval_text('wiki103'))[:1000]


@pytest.fixture(scope='module')
def hf_reference(tiny_hf_dir, wiki_ids):
    """Per-window (mean NLL, scored tokens) from GPT2LMHeadModel(input_ids, labels=...) as in the HF guide."""
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    out = {}
    for stride in (128, 64):
        windows, prev_end, n = [], 0, len(wiki_ids)
        for begin in range(0, n, stride):
            end = min(begin + 128, n)
            trg_len = end - prev_end
            input_ids = wiki_ids[None, begin:end]
            labels = input_ids.clone()
            labels[:, :-trg_len] = -100
            with torch.no_grad():
                loss = hf(input_ids, labels=labels).loss.item()
            windows.append((loss, int((labels[:, 1:] != -100).sum())))
            prev_end = end
            if end == n:
                break
        out[stride] = windows
    return out


@pytest.fixture(scope='module')
def tiny_gpt(tiny_hf_dir):
    return load_model(tiny_hf_dir)[0].eval()


def test_paper_protocol_equals_hf_labels(tiny_gpt, wiki_ids, hf_reference):
    res = pe.perplexity(tiny_gpt, wiki_ids, max_length=128, batch_size=3)
    ref = hf_reference[128]
    expected = math.exp(sum(loss for loss, _ in ref) / len(ref))
    assert res['n_windows'] == len(ref) == 8  # 7 full windows and the last partial one
    assert res['n_scored'] == sum(k for _, k in ref) == 1000 - 8
    assert res['ppl'] == pytest.approx(expected, rel=1e-5)


def test_token_protocol_and_sliding_equal_hf_labels(tiny_gpt, wiki_ids, hf_reference):
    ref = hf_reference[128]
    tok = math.exp(sum(loss * k for loss, k in ref) / sum(k for _, k in ref))
    assert pe.perplexity(tiny_gpt, wiki_ids, 128, protocol='token')['ppl'] == pytest.approx(tok, rel=1e-5)
    ref = hf_reference[64]  # sliding windows: half of each window is unscored context
    win = math.exp(sum(loss for loss, _ in ref) / len(ref))
    res = pe.perplexity(tiny_gpt, wiki_ids, 128, 64, batch_size=5)
    assert res['n_scored'] == 999 and res['n_windows'] == len(ref) == 15
    assert res['ppl'] == pytest.approx(win, rel=1e-5)


def test_near_uniform_model_gives_vocab_size(tiny_hf_dir, wiki_ids):
    # tiny embeddings make every logit ~0, so each token costs log(vocab) nats
    model = load_model(tiny_hf_dir)[0].eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(1e-3)  # tied with wte
    res = pe.perplexity(model, wiki_ids[:400], 128)
    assert res['ppl'] == pytest.approx(50257, rel=0.02)
    assert res['nll'] == pytest.approx(math.log(50257), abs=0.02)


# -----------------------------------------------------------------------------
# command line

def run(*args, env=None):
    return subprocess.run([sys.executable, 'perplexity_eval.py', *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


@pytest.fixture(scope='module')
def kron_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    config = GPTConfig(block_size=64, n_layer=1, n_head=2, n_embd=32, mlp='kron', kron_dim1=4, kron_dim2=8)
    path = tmp_path_factory.mktemp('ckpt') / 'kron.pt'
    save_checkpoint({'model': GPT(config).state_dict(), 'model_args': dataclasses.asdict(config)}, path)
    return path


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    """A data folder in the original layout holding the first ~600 bytes of each test file."""
    root = tmp_path_factory.mktemp('data')
    for rel in ('wikitext-103-v1/wiki.test.tokens', 'wikitext-2-v1/wiki.test.tokens',
                'lambada/lambada_test_plain_text.txt', 'lambada/lambada_test.jsonl'):
        with open(os.path.join(ROOT, 'data', 'texts', rel), encoding='utf-8') as f:
            lines = f.readlines()
        keep = []
        while sum(map(len, keep)) < 600:
            keep.append(lines[len(keep)])
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_text(''.join(keep), encoding='utf-8')
    return root


def test_cli_checkpoint_text_file(tmp_path, kron_ckpt):
    text = tmp_path / 'notes.txt'
    text.write_text(pe.eval_text('lambada_openai')[:1500], encoding='utf-8')
    out = tmp_path / 'res.json'
    r = run(kron_ckpt, '--text_file', text, '--stride', 32, '--protocol', 'token', '--json', out)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert set(res) >= {'model', 'params_paper', 'params_nanogpt', 'block_size', 'results'}
    row = res['results']['notes.txt']
    assert set(row) >= {'ppl', 'nll', 'n_tokens', 'n_windows', 'protocol', 'description'}
    assert row['protocol'] == 'token' and 'token-mean, max_length 64, stride 32' in row['description']
    model = model_from_checkpoint(torch.load(kron_ckpt, weights_only=False)).eval()
    assert res['params_paper'] == model.num_params('paper')
    ids = torch.tensor(get_encoding().encode_ordinary(text.read_text(encoding='utf-8')))
    ref = pe.perplexity(model, ids, 64, 32, protocol='token')
    assert all(row[k] == ref[k] for k in ('n_tokens', 'n_scored', 'n_windows'))
    # another process can split float32 sums differently (threads, kernels): on one CI machine the
    # NLLs (near ln(50257) = 10.8 for this untrained model) differed by 1e-6 relative, which exp
    # makes 1.1e-5 in the perplexity. Counts must agree exactly; NLLs to float32 accuracy
    assert row['nll'] == pytest.approx(ref['nll'], rel=1e-5) and row['ppl'] == pytest.approx(math.exp(row['nll']))


def main_in_process(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', ['perplexity_eval.py', *map(str, args)])
    pe.main()


def test_main_env_data_dir(tmp_path, kron_ckpt, small_data, monkeypatch, capsys):
    # in-process: the CLI tests above already pay the interpreter start-up twice
    out = tmp_path / 'lam.json'
    monkeypatch.setenv('KRONY_DATA_DIR', str(small_data))
    main_in_process(monkeypatch, kron_ckpt, 'lambada_openai', '--json', out)
    assert 'LAMBADA (OpenAI)' in capsys.readouterr().out
    row = json.loads(out.read_text())['results']['lambada_openai']
    assert str(small_data) in row['description']
    assert row['n_tokens'] == len(pe.tokenize(pe.eval_text('lambada_openai', data_dir=str(small_data))))


def test_main_hf_dir_all_three(tmp_path, tiny_hf_dir, small_data, monkeypatch, capsys):
    # in-process: the entry point is covered by the subprocess tests; this one checks the table and
    # the three data sets without paying another interpreter and transformers import
    out = tmp_path / 'all.json'
    main_in_process(monkeypatch, tiny_hf_dir, '--data_dir', small_data, '--json', out, '--batch_size', 2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ['params', 'wikitext-103', 'wikitext-2', 'LAMBADA']
    assert lines[1].startswith(tiny_hf_dir) and lines[2].startswith('bits per byte')
    assert 'tokenizer: GPT-2 BPE' in lines[3]
    res = json.loads(out.read_text())
    assert list(res['results']) == ['wiki103', 'wiki2', 'lambada']
    assert res['params_paper'] == load_model(tiny_hf_dir)[0].num_params('paper')
    for name, row in res['results'].items():
        assert row['n_tokens'] == len(pe.tokenize(pe.eval_text(name, data_dir=str(small_data))))
        assert row['protocol'] == 'window' and row['max_length'] == row['stride'] == 128
        assert f"{row['ppl']:.2f}" in lines[1] and f"{row['bpb']:.4f}" in lines[2]
        # bits per byte with GPT-2's tokens: the total NLL over the bytes of all but the first token
        text = pe.eval_text(name, data_dir=str(small_data))
        first = len(get_encoding().decode_single_token_bytes(get_encoding().encode_ordinary(text)[0]))
        assert row['bpb'] == pytest.approx(row['nll_sum'] / math.log(2) / (len(text.encode('utf-8')) - first))
    assert 'wikitext-103-v1 test (tokenized)' in res['results']['wiki103']['description']


@pytest.mark.parametrize('args,message', [
    (['{missing}'], 'does not exist'),
    (['{ckpt}', 'lambada', '--data_dir', '{empty}'], 'KRONY_DATA_DIR'),
])
def test_cli_bad_input(tmp_path, kron_ckpt, args, message):
    (tmp_path / 'empty').mkdir()
    fill = dict(ckpt=kron_ckpt, missing=tmp_path / 'nope' / 'model', empty=tmp_path / 'empty')
    out = tmp_path / 'res.json'
    r = run(*[a.format(**fill) for a in args], '--json', out)
    assert r.returncode == 1
    assert r.stderr.startswith('error: ') and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize('args,message', [
    (['{ckpt}', 'ptb'], 'unknown dataset'),
    (['{ckpt}', 'wiki2', '--max_length', '65'], 'block_size=64'),
    (['{ckpt}', 'wiki2', '--stride', '0'], 'stride=0'),
    (['{ckpt}', 'wiki2', '--max_length', '32', '--stride', '33'], 'must not exceed max_length=32'),
    (['{ckpt}', 'wiki2', '--protocol', 'bits'], 'window or token'),
    (['{ckpt}', 'wiki2', '--split', 'train'], 'unknown split'),
    (['{ckpt}', 'lambada_openai', '--split', 'valid'], 'no valid split'),
    (['{ckpt}', 'wiki2', '--text_file', '{text}'], 'not both'),
    (['{ckpt}', '--text_file', '{missing}'], 'does not exist'),
    (['{ckpt}.missing.pt'], 'does not exist'),
])
def test_main_bad_input(tmp_path, kron_ckpt, monkeypatch, args, message):
    # the same checks in-process (a subprocess per case would cost seconds of imports each);
    # the script's entry turns this ValueError into "error: ...", exit 1
    fill = dict(ckpt=kron_ckpt, missing=tmp_path / 'nope.txt', text=__file__)
    out = tmp_path / 'res.json'
    with pytest.raises(ValueError, match=message):
        main_in_process(monkeypatch, *[a.format(**fill) for a in args], '--json', out)
    assert not out.exists()
