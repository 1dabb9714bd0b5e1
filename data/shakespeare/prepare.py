"""
tinyshakespeare as GPT-2 BPE tokens: train.bin / val.bin (uint16, first 90% / last 10%) in this
folder, from data/texts/tinyshakespeare/input.txt (shipped with the project).

    python data/shakespeare/prepare.py
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's modules
SOURCE = os.path.join(HERE, '..', 'texts', 'tinyshakespeare', 'input.txt')


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    p.add_argument('--out_dir', default=HERE, help='where the token files go (default: this folder)')
    out_dir = p.parse_args().out_dir
    from files import read_text, write_tokens
    from tokenizer import get_encoding
    text = read_text(os.path.normpath(SOURCE))
    n = int(0.9 * len(text))
    enc = get_encoding()
    train, val = enc.encode_ordinary(text[:n]), enc.encode_ordinary(text[n:])
    write_tokens(train, os.path.join(out_dir, 'train.bin'))
    write_tokens(val, os.path.join(out_dir, 'val.bin'))
    print(f"train {len(train):,} tokens, val {len(val):,} tokens")


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
