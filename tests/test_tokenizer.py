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


# ---------------------------------------------------------------- character vocabularies

def char_text():
    with open(os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.valid.tokens'), encoding='utf-8') as f:
        return f.read(30_000)


def test_char_vocabulary_round_trips_through_meta_and_hf():
    from tokenizer import UNK, CharTokenizer
    text = char_text()
    chars = CharTokenizer.build(text, unk=True)
    assert chars.itos == sorted(set(text) | {UNK})
    again = CharTokenizer.from_meta(chars.to_meta())
    assert again.itos == chars.itos and again.unk == UNK
    held_out = text[:500] + " 日本 🙂 \x07"  # characters outside the vocabulary
    ids = chars.encode(held_out)
    assert ids[:500] == [chars.itos.index(c) for c in text[:500]]
    assert chars.decode(ids) == text[:500] + ''.join(c if c in chars.stoi else UNK for c in held_out[500:])
    hf = chars.hf_tokenizer()
    assert hf(held_out, add_special_tokens=False)['input_ids'] == ids
    assert hf.decode(ids) == chars.decode(ids)
    strict = CharTokenizer.build(text)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        strict.encode("日本")


def test_char_tokenizer_files_load_with_auto_tokenizer(tmp_path):
    from transformers import AutoTokenizer
    from tokenizer import CharTokenizer, write_hf_tokenizer
    text = char_text()
    chars = CharTokenizer.build(text, unk=True)
    write_hf_tokenizer(chars, tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == chars.vocab_size
    assert tok(text, add_special_tokens=False)['input_ids'] == chars.encode(text)
    assert tok.decode(chars.encode(text)) == text


def test_gpt2_export_files_are_the_hub_layout(tmp_path):
    """vocab.json and merges.txt next to tokenizer.json, as in a hub GPT-2 directory: the files
    themselves (OpenAI's, checked by hash), read back by tokenizers' own BPE loader, give tiktoken's ids."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoTokenizer
    from tokenizer import GPT2BPE, bpe_files, write_hf_tokenizer
    write_hf_tokenizer(GPT2BPE(), tmp_path)
    assert {'vocab.json', 'merges.txt', 'tokenizer.json'} <= set(os.listdir(tmp_path))
    encoder, vocab = bpe_files()
    assert (tmp_path / 'vocab.json').read_bytes() == open(encoder, 'rb').read()
    assert (tmp_path / 'merges.txt').read_bytes() == open(vocab, 'rb').read()
    text = read_slice('wikitext-2-raw/wiki.test.raw')[:5000]
    bpe = ByteLevelBPETokenizer(str(tmp_path / 'vocab.json'), str(tmp_path / 'merges.txt'))
    assert bpe.encode(text).ids == get_encoding().encode_ordinary(text)
    assert AutoTokenizer.from_pretrained(tmp_path)(text)['input_ids'] == get_encoding().encode_ordinary(text)
