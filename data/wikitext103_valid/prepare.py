"""
WikiText-103's validation split as a small GPT-2 BPE training corpus (uint16): train.bin (first
90%) and val.bin (last 10%, for choosing checkpoints) in this folder. The test split stays held
out for perplexity_eval.py. Reads data/texts/wikitext-103-v1/wiki.valid.tokens.

    python data/wikitext103_valid/prepare.py
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's modules
SOURCE = os.path.join(HERE, '..', 'texts', 'wikitext-103-v1', 'wiki.valid.tokens')


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    p.add_argument('--out_dir', default=HERE, help='where the token files go (default: this folder)')
    out_dir = p.parse_args().out_dir
    from files import read_text, write_tokens
    from tokenizer import get_encoding
    path = os.path.normpath(SOURCE)
    read_text(path)  # missing, empty or not UTF-8: one line naming the file
    with open(path, encoding='utf-8') as f:
        rows = [row if row.strip() else '' for row in f]  # HF's wikitext rows: a blank line is ''
    # the rows of HF's wikitext joined with "\n\n", the layout perplexity_eval.py evaluates
    ids = get_encoding().encode_ordinary("\n\n".join(rows))
    n = int(0.9 * len(ids))
    write_tokens(ids[:n], os.path.join(out_dir, 'train.bin'))
    write_tokens(ids[n:], os.path.join(out_dir, 'val.bin'))
    print(f"train {n:,} tokens, val {len(ids) - n:,} tokens")


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
