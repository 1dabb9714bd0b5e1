"""
WikiText-103's validation split as a small GPT-2 BPE training corpus (uint16): train.bin (first
90%) and val.bin (last 10%, for choosing checkpoints) in this folder. The test split stays held
out for perplexity_eval.py. Reads data/texts/wikitext-103-v1/wiki.valid.tokens.

    python data/wikitext103_valid/prepare.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, '..', 'texts', 'wikitext-103-v1', 'wiki.valid.tokens')
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's modules
import errors  # noqa: E402
from texts import prepare_args, wikitext_rows, write_tokens  # noqa: E402
from tokenizer import get_encoding  # noqa: E402


def main():
    args = prepare_args(__doc__, HERE, SOURCE)
    rows = wikitext_rows(args.source)
    # the rows of HF's wikitext joined with "\n\n", the layout perplexity_eval.py evaluates
    ids = get_encoding().encode_ordinary("\n\n".join(rows))
    n = int(0.9 * len(ids))
    write_tokens(ids[:n], os.path.join(args.out_dir, 'train.bin'))
    write_tokens(ids[n:], os.path.join(args.out_dir, 'val.bin'))
    print(f"train {n:,} tokens, val {len(ids) - n:,} tokens")


if __name__ == '__main__':
    errors.run(main)
