"""
tinyshakespeare as characters: train.bin / val.bin (uint16 ids, first 90% / last 10%) and
meta.pkl (vocab_size, stoi, itos) in this folder. Reads data/texts/tinyshakespeare/input.txt.

    python data/shakespeare_char/prepare.py
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
    from files import read_text
    from tokenizer import write_char_dataset
    text = read_text(os.path.normpath(SOURCE))
    n = int(0.9 * len(text))
    meta = write_char_dataset(text[:n], text[n:], out_dir)
    print(f"{meta['vocab_size']} characters; train {n:,} tokens, val {len(text) - n:,} tokens")


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
