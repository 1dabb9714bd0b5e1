"""The offline GPT-2 BPE gives the ids of transformers' GPT-2 tokenizer on the project's real text."""
import json
import os

import pytest

from tokenizer import EOT, get_encoding, gpt2_hf_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CHARS = 60_000  # a slice of each file: enough text for every kind of pre-tokenizer split


@pytest.fixture(scope='module')
def hf():
    return gpt2_hf_tokenizer()


def read_slice(rel):
    with open(os.path.join(ROOT, 'data', 'texts', rel), encoding='utf-8') as f:
        text = f.read(N_CHARS)
    if rel.endswith('.jsonl'):  # the passages, not the JSON syntax
        text = "\n\n".join(json.loads(line)['text'] for line in text.splitlines()[:-1])
    return text


@pytest.mark.parametrize('rel', ['wikitext-103-v1/wiki.test.tokens', 'wikitext-2-v1/wiki.valid.tokens',
                                 'wikitext-2-raw/wiki.test.raw', 'lambada/lambada_test_plain_text.txt',
                                 'lambada/lambada_test.jsonl', 'tinyshakespeare/input.txt'])
def test_ids_equal_hf_tokenizer(hf, rel):
    text = read_slice(rel)
    ids = get_encoding().encode_ordinary(text)
    assert len(ids) > 5_000
    assert ids == hf(text)['input_ids']
    assert get_encoding().decode(ids) == text  # byte-level BPE loses nothing


def test_eval_join_and_unicode(hf):
    # the paper's "\n\n" joins of rows that already end in "\n", runs of spaces, non-ASCII bytes
    text = "\n\n".join([" = Robert Boulter = \n", "", " He  was\tborn in 1972 . \n"]) + " café 日本語 🙂 — “quoted”"
    assert get_encoding().encode_ordinary(text) == hf(text)['input_ids']


def test_known_ids():
    # published GPT-2 ids, independent of both implementations
    enc = get_encoding()
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.n_vocab == 50257 and EOT == 50256
    assert enc.encode("<|endoftext|>", allowed_special='all') == [EOT]
