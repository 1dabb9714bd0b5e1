"""
Reading the shipped corpora and writing token files: what data/<name>/prepare.py, the tokenizer
and perplexity_eval.py share. Every reader fails with one line naming the file.
"""

import io
import os

from outputs import atomic_write, check_aliases, check_destination


def read_text(path):
    """The text of a UTF-8 file; ValueError naming the file if it is missing, not UTF-8 or empty."""
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist")
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise ValueError(f"{path} is empty")
    return text


def write_tokens(ids, path):
    """Token ids as uint16 (the format train.py reads) to path, atomically."""
    import numpy as np
    arr = np.asarray(ids, dtype=np.int64)
    if arr.size == 0:
        raise ValueError(f"refusing to write {path}: no tokens")
    if arr.min() < 0 or arr.max() >= 2 ** 16:
        raise ValueError(f"refusing to write {path}: token ids must be in [0, 65536) for uint16")
    atomic_write(path, lambda f: arr.astype(np.uint16).tofile(f))


def prepare_args(doc, out_dir, source):
    """The arguments of a data/<name>/prepare.py that reads a shipped text: --out_dir (default the
    script's folder) and --source (default the shipped file), the destination checked."""
    import argparse
    p = argparse.ArgumentParser(description=doc.strip().split('\n\n')[0])
    p.add_argument('--out_dir', default=out_dir, help='where the token files go (default: this folder)')
    p.add_argument('--source', default=os.path.normpath(source), help=f'the text (default: {os.path.normpath(source)})')
    args = p.parse_args()
    check_destination(args.out_dir, kind='dir')
    for name in ('train.bin', 'val.bin', 'meta.pkl'):
        check_aliases(os.path.join(args.out_dir, name), [args.source])
    return args


def wikitext_rows(path):
    """The rows of a WikiText file as HF's wikitext loader gives them: every line with its "\\n",
    whitespace-only lines as ''."""
    lines = io.StringIO(read_text(path))  # missing, empty or not UTF-8: one line naming the file
    return [row if row.strip() else '' for row in lines]


def jsonl_texts(path):
    """The "text" of every JSON object of a .jsonl file, one per line (blank lines skipped); a line
    that is not such an object raises ValueError naming the file and the line."""
    import json
    texts = []
    for i, line in enumerate(io.StringIO(read_text(path)), 1):  # empty or not UTF-8: one line
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {i}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get('text'), str):
            raise ValueError(f"{path}, line {i}: no \"text\" string in the JSON object")
        texts.append(row['text'])
    return texts
