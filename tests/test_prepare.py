"""data/*/prepare.py: each round-trips its text through the token files."""
import importlib.util
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from tokenizer import EOT, get_encoding


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)


def tokens(path):
    return np.fromfile(path, dtype=np.uint16).tolist()


def test_openwebtext_local_files_round_trip(tmp_path):
    docs = [f"Document {i}: caf\u00e9, na\u00efve \u4e2d\u6587 and   spaces.\nSecond line {i * 7}.\n" for i in range(9)]
    files = []
    for i, doc in enumerate(docs[:4]):  # a .txt file is one document
        (tmp_path / f'd{i}.txt').write_text(doc, encoding='utf-8')
        files.append(str(tmp_path / f'd{i}.txt'))
    with open(tmp_path / 'rest.jsonl', 'w', encoding='utf-8') as f:
        for doc in docs[4:]:
            f.write(json.dumps({'text': doc, 'url': 'x'}) + '\n')
    files.append(str(tmp_path / 'rest.jsonl'))
    out = tmp_path / 'out'
    res = run('data/openwebtext/prepare.py', *files, '--out_dir', str(out), '--num_proc', '1')
    assert res.returncode == 0, res.stderr[-2000:]
    enc = get_encoding()
    got = []
    for split in ('train', 'val'):
        ids = tokens(out / f'{split}.bin')
        assert ids and ids[-1] == EOT
        pieces = ' '.join(map(str, ids)).split(str(EOT))  # documents end with EOT
        got += [enc.decode([int(t) for t in p.split()]) for p in pieces[:-1]]
        assert f"{split}: " in res.stdout and f"{len(ids):,} tokens" in res.stdout
    assert sorted(got) == sorted(docs)
    assert len(tokens(out / 'val.bin')) < len(tokens(out / 'train.bin'))
    assert sorted(os.listdir(out)) == ['train.bin', 'val.bin']  # no temporary file left


def test_openwebtext_missing_file(tmp_path):
    res = run('data/openwebtext/prepare.py', str(tmp_path / 'nope.txt'), '--out_dir', str(tmp_path / 'out'))
    assert res.returncode == 1
    assert res.stderr.startswith(f"error: {tmp_path / 'nope.txt'} does not exist")
    assert not (tmp_path / 'out').exists()


TEXTS = os.path.join(ROOT, 'data', 'texts')


@pytest.mark.parametrize('folder', ['shakespeare', 'wikitext103_valid'])
def test_bpe_corpora_round_trip(folder, tmp_path):
    res = run(f'data/{folder}/prepare.py', '--out_dir', str(tmp_path))
    assert res.returncode == 0, res.stderr
    if folder == 'shakespeare':
        with open(os.path.join(TEXTS, 'tinyshakespeare', 'input.txt'), encoding='utf-8') as f:
            text = f.read()
    else:  # the rows joined as perplexity_eval.py joins the test split
        with open(os.path.join(TEXTS, 'wikitext-103-v1', 'wiki.valid.tokens'), encoding='utf-8') as f:
            text = "\n\n".join(row if row.strip() else '' for row in f)
    train, val = (tokens(tmp_path / f'{s}.bin') for s in ('train', 'val'))
    assert get_encoding().decode(train) + get_encoding().decode(val) == text
    assert f"train {len(train):,} tokens, val {len(val):,} tokens" in res.stdout
    assert sorted(os.listdir(tmp_path)) == ['train.bin', 'val.bin']


def test_shakespeare_char_round_trip_and_rerun(tmp_path):
    first = None
    for _ in range(2):
        res = run('data/shakespeare_char/prepare.py', '--out_dir', str(tmp_path))
        assert res.returncode == 0, res.stderr
        files = {name: (tmp_path / name).read_bytes() for name in ('train.bin', 'val.bin')}
        assert first is None or files == first  # a rerun writes the same files
        first = files
    with open(tmp_path / 'meta.pkl', 'rb') as f:
        meta = pickle.load(f)
    with open(os.path.join(TEXTS, 'tinyshakespeare', 'input.txt'), encoding='utf-8') as f:
        text = f.read()
    assert meta['vocab_size'] == len(set(text)) == 65
    ids = tokens(tmp_path / 'train.bin') + tokens(tmp_path / 'val.bin')
    assert ''.join(meta['itos'][i] for i in ids) == text


def load_wikitext103():
    spec = importlib.util.spec_from_file_location('wikitext103_prepare', os.path.join(ROOT, 'data', 'wikitext103', 'prepare.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WIKI_LINES = [' \n', ' = Valkyria Chronicles III = \n', ' \n', " Senj\u014d no Valkyria 3 : caf\u00e9 , na\u00efve @-@ 7 .\n",
              '\n', ' = = Gameplay = = \n', ' \u4e2d\u6587 and   spaces , 1 @,@ 000 .\n']


def per_row_ids(rows):
    """InRank's layout: each row encoded on its own, concatenated with nothing between."""
    enc = get_encoding()
    return [t for row in rows for t in enc.encode_ordinary(row)]


def test_wikitext103_local_files_encode_each_row_on_its_own(tmp_path):
    (tmp_path / 'wiki.train.raw').write_text(''.join(WIKI_LINES * 3), encoding='utf-8')
    (tmp_path / 'wiki.valid.raw').write_text(''.join(WIKI_LINES[:4]), encoding='utf-8')
    res = run('data/wikitext103/prepare.py', '--train_file', str(tmp_path / 'wiki.train.raw'), '--val_file',
              str(tmp_path / 'wiki.valid.raw'), '--out_dir', str(tmp_path / 'out'), '--num_threads', '1')
    assert res.returncode == 0, res.stderr
    rows = [line if line.strip() else '' for line in WIKI_LINES]  # the hub's rows: a blank line is ''
    train, val = tokens(tmp_path / 'out' / 'train.bin'), tokens(tmp_path / 'out' / 'val.bin')
    assert train == per_row_ids(rows * 3) and val == per_row_ids(rows[:4])
    assert get_encoding().decode(train) == ''.join(rows * 3)
    assert f"train: {3 * len(rows)} rows, {len(train):,} tokens" in res.stdout
    assert sorted(os.listdir(tmp_path / 'out')) == ['train.bin', 'val.bin']
    # without --val_file: WikiText-103's raw validation text shipped in data/texts
    res = run('data/wikitext103/prepare.py', '--train_file', str(tmp_path / 'wiki.train.raw'),
              '--out_dir', str(tmp_path / 'out2'))
    assert res.returncode == 0, res.stderr
    with open(os.path.join(TEXTS, 'wikitext-2-raw', 'wiki.valid.raw'), encoding='utf-8') as f:
        valid = [row if row.strip() else '' for row in f]
    assert tokens(tmp_path / 'out2' / 'val.bin') == per_row_ids(valid)


def test_wikitext103_from_the_hub_reads_both_splits(tmp_path, monkeypatch):
    import datasets
    module = load_wikitext103()
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return {'text': {'train': WIKI_LINES * 2, 'validation': WIKI_LINES[1:3]}[split]}
    monkeypatch.setattr(datasets, 'load_dataset', fake_load_dataset)
    counts = module.prepare('', '', str(tmp_path), num_threads=1)
    assert calls == [('Salesforce/wikitext', 'wikitext-103-raw-v1', 'train'),
                     ('Salesforce/wikitext', 'wikitext-103-raw-v1', 'validation')]
    assert tokens(tmp_path / 'train.bin') == per_row_ids(WIKI_LINES * 2)
    assert tokens(tmp_path / 'val.bin') == per_row_ids(WIKI_LINES[1:3])
    assert counts == {'train': len(per_row_ids(WIKI_LINES * 2)), 'val': len(per_row_ids(WIKI_LINES[1:3]))}

    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable\nmore lines")
    monkeypatch.setattr(datasets, 'load_dataset', offline)
    with pytest.raises(ValueError, match=r"failed \(ConnectionError: hub unreachable\); pass the raw release"):
        module.prepare('', '', str(tmp_path / 'none'), num_threads=1)
    assert not (tmp_path / 'none').exists()


@pytest.mark.parametrize('args,message', [
    (['--train_file', 'nope.raw'], 'nope.raw does not exist'),
    (['--val_file', 'wiki.valid.raw'], '--val_file goes with --train_file'),
])
def test_wikitext103_errors(tmp_path, args, message):
    res = run('data/wikitext103/prepare.py', *args, '--out_dir', str(tmp_path / 'out'))
    assert res.returncode == 1 and res.stderr.startswith('error: ') and message in res.stderr, res.stderr
    assert not (tmp_path / 'out').exists()


def load_openwebtext():
    spec = importlib.util.spec_from_file_location('openwebtext_prepare', os.path.join(ROOT, 'data', 'openwebtext', 'prepare.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_openwebtext_known_offline_hub_stops_at_once_with_what_helps(tmp_path):
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_HOME': str(tmp_path / 'hf')}  # an empty cache
    res = subprocess.run([sys.executable, 'data/openwebtext/prepare.py', '--out_dir', str(tmp_path / 'out')],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("error: the Hugging Face hub is out of reach (HF_HUB_OFFLINE is set) and "
                                 "Skylion007/openwebtext is not in the local cache; pass local files instead")
    assert '--dataset=wikitext103_valid' in res.stderr and '--hf_revision' not in res.stderr  # no flag that needs the hub
    assert not (tmp_path / 'out').exists()


def test_openwebtext_hub_probe(monkeypatch):
    import socket
    owt = load_openwebtext()
    for var in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('HF_DATASETS_OFFLINE', 'true')
    assert owt.hub_offline_reason() == 'HF_DATASETS_OFFLINE is set'
    monkeypatch.delenv('HF_DATASETS_OFFLINE')
    # a port that listens: reachable; the same port once closed: one refused connection, no retries
    server = socket.create_server(('127.0.0.1', 0))
    port = server.getsockname()[1]
    monkeypatch.setenv('HF_ENDPOINT', f'http://127.0.0.1:{port}')
    assert owt.hub_offline_reason() == ''
    server.close()
    assert owt.hub_offline_reason().startswith(f'no connection to 127.0.0.1:{port} (')
    monkeypatch.setenv('HTTPS_PROXY', 'http://proxy:3128')  # behind a proxy the probe says nothing
    assert owt.hub_offline_reason() == ''
