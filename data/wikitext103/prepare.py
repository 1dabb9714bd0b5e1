"""
WikiText-103 (raw) as GPT-2 BPE tokens, the corpus InRank trains its GPT-2 models on from
scratch: train.bin (the train split, about 118M tokens) and val.bin (the validation split) in
this folder, uint16. Every row is encoded on its own and the rows are concatenated with nothing
between them, as InRank's data module does (a row ends with its own newline; blank rows are
empty). The test split stays held out for perplexity_eval.py.

    python data/wikitext103/prepare.py                                    # from the Hugging Face hub
    python data/wikitext103/prepare.py --train_file wikitext-103-raw/wiki.train.raw   # local files
    python data/wikitext103/prepare.py --train_file wiki.train.raw --val_file wiki.valid.raw

Local files are those of the raw release (wikitext-103-raw-v1.zip), one row per line. Without
--val_file the validation rows come from data/texts/wikitext-2-raw/wiki.valid.raw, the same text
as WikiText-103's raw validation split. Options: --out_dir DIR (default: this folder),
--hf_name, --hf_config, --num_threads N (tokenizer threads, default: CPU count).
train.bin takes 2 bytes per token. Rerunning rebuilds the same files.
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..', '..')
sys.path.insert(0, ROOT)  # tokenizer.py and texts.py at the repository root
import errors  # noqa: E402
from outputs import atomic_write, check_destination  # noqa: E402
from texts import wikitext_rows  # noqa: E402

VALID = os.path.normpath(os.path.join(ROOT, 'data', 'texts', 'wikitext-2-raw', 'wiki.valid.raw'))
CHUNK = 20_000  # rows encoded per batch: bounded memory for the 1.8M rows of the train split


def hub_rows(hf_name, hf_config, split):
    """The 'text' rows of one split of the hub's WikiText."""
    from datasets import load_dataset
    try:
        return load_dataset(hf_name, hf_config, split=split)['text']
    except Exception as e:  # no hub, a failed download: one line and what to do instead
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ''
        raise ValueError(f"load_dataset({hf_name!r}, {hf_config!r}) failed ({type(e).__name__}: {msg}); "
                         f"pass the raw release's files with --train_file (and --val_file)") from None


def write_rows(rows, path, num_threads):
    """Encode every row on its own, concatenate, write uint16 atomically; returns (rows, tokens)."""
    from tokenizer import get_encoding
    enc = get_encoding()
    counts = [0, 0]

    def write(f):
        chunk = []
        for row in [*rows, None]:  # None flushes the last chunk
            if row is not None:
                chunk.append(row)
            if len(chunk) == CHUNK or (row is None and chunk):
                ids = [t for r in enc.encode_ordinary_batch(chunk, num_threads=num_threads) for t in r]
                np.asarray(ids, dtype=np.uint16).tofile(f)
                counts[0] += len(chunk)
                counts[1] += len(ids)
                chunk = []
        if not counts[1]:
            raise ValueError(f"refusing to write {path}: no tokens")

    atomic_write(path, write)
    return tuple(counts)


def prepare(train_file, val_file, out_dir, num_threads, hf_name='Salesforce/wikitext',
            hf_config='wikitext-103-raw-v1'):
    """{'train': n_tokens, 'val': n_tokens} after writing out_dir/{train,val}.bin."""
    if train_file:
        splits = {'train': wikitext_rows(train_file), 'val': wikitext_rows(val_file or VALID)}
    else:
        splits = {'train': hub_rows(hf_name, hf_config, 'train'), 'val': hub_rows(hf_name, hf_config, 'validation')}
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for name, rows in splits.items():
        n_rows, counts[name] = write_rows(rows, os.path.join(out_dir, f'{name}.bin'), num_threads)
        print(f"{name}: {n_rows:,} rows, {counts[name]:,} tokens")
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    p.add_argument('--train_file', default='', help="the raw release's wiki.train.raw instead of the hub")
    p.add_argument('--val_file', default='', help=f"with --train_file: wiki.valid.raw (default: {VALID})")
    p.add_argument('--out_dir', default=HERE)
    p.add_argument('--num_threads', type=int, default=os.cpu_count() or 1)
    p.add_argument('--hf_name', default='Salesforce/wikitext')
    p.add_argument('--hf_config', default='wikitext-103-raw-v1')
    args = p.parse_args()
    if args.val_file and not args.train_file:
        raise ValueError("--val_file goes with --train_file (without it both splits come from the hub)")
    check_destination(args.out_dir, kind='dir')  # before reading or downloading anything
    prepare(args.train_file, args.val_file, args.out_dir, args.num_threads, args.hf_name, args.hf_config)


if __name__ == '__main__':
    errors.run(main)
