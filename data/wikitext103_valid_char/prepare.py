"""
WikiText-103's validation split as characters, the training set of the CPU miniature
(script/compare.py, script/demo.py): train.bin (first 90%) and val.bin (last 10%, for choosing
checkpoints) as uint16 character ids, and meta.pkl (the vocabulary: the characters of the split,
plus U+FFFD for any other character, so that held-out text always encodes). The rows are joined
with "\\n\\n" as perplexity_eval.py joins them, and the test split stays held out for it.
Reads data/texts/wikitext-103-v1/wiki.valid.tokens.

    python data/wikitext103_valid_char/prepare.py [--out_dir DIR] [--source FILE]
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, '..', 'texts', 'wikitext-103-v1', 'wiki.valid.tokens')
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's modules
import errors  # noqa: E402
from texts import prepare_args, wikitext_rows  # noqa: E402
from tokenizer import write_char_dataset  # noqa: E402


def main():
    args = prepare_args(__doc__, HERE, SOURCE)
    text = "\n\n".join(wikitext_rows(args.source))  # HF's rows, joined as perplexity_eval.py joins them
    n = int(0.9 * len(text))
    meta = write_char_dataset(text[:n], text[n:], args.out_dir, unk=True)
    print(f"{meta['vocab_size']} characters (U+FFFD for others); train {n:,} tokens, val {len(text) - n:,} tokens")


if __name__ == '__main__':
    errors.run(main)
