"""
WikiText-103's validation split as a small training corpus (GPT-2 BPE, uint16): train.bin (first
90%) and val.bin (last 10%, for choosing checkpoints) in this folder. The test split stays held
out for perplexity_eval.py. Used by script/demo.py; reads data/wikitext-103-v1/wiki.valid.tokens.

    python data/wikitext103_valid/prepare.py
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # gpt2_tokenizer.py at the repository root
SOURCE = os.path.join(HERE, '..', 'wikitext-103-v1', 'wiki.valid.tokens')


def write_tokens(ids, path):
    tmp = f"{path}.tmp"
    np.asarray(ids, dtype=np.uint16).tofile(tmp)
    os.replace(tmp, path)  # a rerun or a crash never leaves a half-written file


def main():
    from gpt2_tokenizer import get_encoding
    if not os.path.isfile(SOURCE):
        raise ValueError(f"{os.path.normpath(SOURCE)} is missing; it ships with the project (see data/README.md), "
                         f"or take wiki.valid.tokens from the wikitext-103-v1 archive")
    with open(SOURCE, encoding='utf-8') as f:
        rows = [row if row.strip() else '' for row in f]  # the rows of HF's wikitext: blank lines are ''
    # joined with "\n\n", the layout perplexity_eval.py evaluates, so train and test text look alike
    text = "\n\n".join(rows)
    ids = get_encoding().encode_ordinary(text)
    n = int(0.9 * len(ids))
    write_tokens(ids[:n], os.path.join(HERE, 'train.bin'))
    write_tokens(ids[n:], os.path.join(HERE, 'val.bin'))
    print(f"train {n:,} tokens, val {len(ids) - n:,} tokens")


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
