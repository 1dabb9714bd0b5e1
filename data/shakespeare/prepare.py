"""
tinyshakespeare as GPT-2 BPE tokens: train.bin / val.bin (uint16, first 90% / last 10%) in this
folder, from data/texts/tinyshakespeare/input.txt (shipped with the project).

    python data/shakespeare/prepare.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, '..', 'texts', 'tinyshakespeare', 'input.txt')
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's modules
import errors  # noqa: E402
from texts import prepare_args, read_text, write_tokens  # noqa: E402
from tokenizer import get_encoding  # noqa: E402


def main():
    args = prepare_args(__doc__, HERE, SOURCE)
    text = read_text(args.source)
    n = int(0.9 * len(text))
    enc = get_encoding()
    train, val = enc.encode_ordinary(text[:n]), enc.encode_ordinary(text[n:])
    write_tokens(train, os.path.join(args.out_dir, 'train.bin'))
    write_tokens(val, os.path.join(args.out_dir, 'val.bin'))
    print(f"train {len(train):,} tokens, val {len(val):,} tokens")


if __name__ == '__main__':
    errors.run(main)
