"""
tinyshakespeare as characters: train.bin / val.bin (uint16 ids, first 90% / last 10%) and
meta.pkl (vocab_size, stoi, itos) in this folder. Reads data/texts/tinyshakespeare/input.txt.

    python data/shakespeare_char/prepare.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, '..', 'texts', 'tinyshakespeare', 'input.txt')
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's modules
import errors  # noqa: E402
from texts import prepare_args, read_text  # noqa: E402
from tokenizer import write_char_dataset  # noqa: E402


def main():
    args = prepare_args(__doc__, HERE, SOURCE)
    text = read_text(args.source)
    n = int(0.9 * len(text))
    meta = write_char_dataset(text[:n], text[n:], args.out_dir)
    print(f"{meta['vocab_size']} characters; train {n:,} tokens, val {len(text) - n:,} tokens")


if __name__ == '__main__':
    errors.run(main)
