"""
tinyshakespeare as characters: train.bin / val.bin (uint16 ids, first 90% / last 10%) and
meta.pkl (vocab_size, stoi, itos) in this folder. Reads data/shakespeare/input.txt.

    python data/shakespeare_char/prepare.py
"""

import os
import pickle
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT = os.path.join(HERE, '..', 'shakespeare', 'input.txt')


def write_tokens(ids, path):
    tmp = f"{path}.tmp"
    np.asarray(ids, dtype=np.uint16).tofile(tmp)
    os.replace(tmp, path)  # a rerun or a crash never leaves a half-written file


def main():
    if not os.path.isfile(INPUT):
        raise ValueError(f"{INPUT} is missing; it ships with the project (git checkout data/shakespeare/input.txt) "
                         f"or download it from https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
    with open(INPUT, encoding='utf-8') as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = [stoi[ch] for ch in text]
    n = int(0.9 * len(ids))
    write_tokens(ids[:n], os.path.join(HERE, 'train.bin'))
    write_tokens(ids[n:], os.path.join(HERE, 'val.bin'))
    with open(os.path.join(HERE, 'meta.pkl.tmp'), 'wb') as f:
        pickle.dump({'vocab_size': len(chars), 'stoi': stoi, 'itos': dict(enumerate(chars))}, f)
    os.replace(os.path.join(HERE, 'meta.pkl.tmp'), os.path.join(HERE, 'meta.pkl'))
    print(f"{len(chars)} characters; train {n:,} tokens, val {len(ids) - n:,} tokens")


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
