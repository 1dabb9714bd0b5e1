"""
tinyshakespeare as GPT-2 BPE tokens: train.bin / val.bin (uint16, first 90% / last 10%) in this
folder, from input.txt (shipped with the project).

    python data/shakespeare/prepare.py
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # gpt2_tokenizer.py at the repository root
URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'


def write_tokens(ids, path):
    tmp = f"{path}.tmp"
    np.asarray(ids, dtype=np.uint16).tofile(tmp)
    os.replace(tmp, path)  # a rerun or a crash never leaves a half-written file


def main():
    from gpt2_tokenizer import get_encoding
    path = os.path.join(HERE, 'input.txt')
    if not os.path.isfile(path):
        raise ValueError(f"{path} is missing; restore it with git checkout data/shakespeare/input.txt "
                         f"or download it from {URL}")
    with open(path, encoding='utf-8') as f:
        text = f.read()
    n = int(0.9 * len(text))
    enc = get_encoding()
    train, val = enc.encode_ordinary(text[:n]), enc.encode_ordinary(text[n:])
    write_tokens(train, os.path.join(HERE, 'train.bin'))
    write_tokens(val, os.path.join(HERE, 'val.bin'))
    print(f"train {len(train):,} tokens, val {len(val):,} tokens")


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
