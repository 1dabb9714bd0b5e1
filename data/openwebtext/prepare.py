"""
OpenWebText as GPT-2 BPE tokens: train.bin (~9.0B tokens) and val.bin (~4.4M) in this folder,
uint16, documents separated by the end-of-text token, nanoGPT's split (0.05% val, seed 2357).

    python data/openwebtext/prepare.py                          # from the Hugging Face hub
    python data/openwebtext/prepare.py --hf_revision refs/convert/parquet   # if the hub copy still has a loading script
    python data/openwebtext/prepare.py urlsf_*.txt more.jsonl   # local files: a .txt is one document,
                                                                # a .jsonl holds one {"text": ...} per line
Options: --out_dir DIR (default: this folder), --num_proc N (default: CPU count / 2).
Without files and with the hub out of reach (HF_HUB_OFFLINE set, or no connection within 3 s)
only the local cache is tried, so it stops at once.
About 54 GB of hub download and cache; the result is 17 GB. Rerunning rebuilds the same files.
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's modules
import errors  # noqa: E402
from outputs import check_destination  # noqa: E402
from texts import jsonl_texts, read_text  # noqa: E402

SPLIT_SEED = 2357       # nanoGPT's split, so val.bin holds the same documents as theirs
VAL_FRACTION = 0.0005


OFFLINE_HINT = ("pass local files instead (python data/openwebtext/prepare.py docs/*.txt more.jsonl), or train on "
                "a set that prepares offline: python data/wikitext103_valid/prepare.py, then --dataset=wikitext103_valid")


def hub_offline_reason(timeout=3.0):
    """Why the Hugging Face hub is known to be out of reach ('' when it may be reachable):
    HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set, or no connection to its host within timeout
    seconds; one quick try instead of the datasets library's retries (about 25 s)."""
    import socket
    from urllib.parse import urlsplit
    for var in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE'):
        if os.environ.get(var, '').strip().lower() in ('1', 'true', 'yes', 'on'):
            return f"{var} is set"
    if any(os.environ.get(v) for v in ('HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy')):
        return ''  # through a proxy a direct connection says nothing
    url = urlsplit(os.environ.get('HF_ENDPOINT', 'https://huggingface.co'))
    host, port = url.hostname or 'huggingface.co', url.port or (80 if url.scheme == 'http' else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return ''
    except OSError as e:
        return f"no connection to {host}:{port} ({e.strerror or type(e).__name__})"


def load_documents(files, hf_name, hf_revision, num_proc):
    """A datasets.Dataset with one 'text' row per document."""
    offline = '' if files else hub_offline_reason()
    if offline:  # only the local cache can help: the datasets library looks there without retrying
        os.environ['HF_HUB_OFFLINE'] = os.environ['HF_DATASETS_OFFLINE'] = '1'
    from datasets import concatenate_datasets, load_dataset
    if not files:
        try:
            return load_dataset(hf_name, revision=hf_revision or None, split='train', num_proc=num_proc)
        except Exception as e:  # no hub, a dataset script, a failed download: one line and what to do
            if offline:
                raise ValueError(f"the Hugging Face hub is out of reach ({offline}) and {hf_name} is not in the "
                                 f"local cache; {OFFLINE_HINT}") from None
            raise ValueError(f"load_dataset({hf_name!r}) failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                             f"try --hf_revision refs/convert/parquet, or pass local .txt / .jsonl files") from None
    for path in files:
        check_local_file(path)
    parts = []
    txt = [p for p in files if p.endswith('.txt')]
    jsonl = [p for p in files if p.endswith('.jsonl')]
    if txt:
        parts.append(load_dataset('text', data_files=txt, sample_by='document', split='train'))
    if jsonl:
        parts.append(load_dataset('json', data_files=jsonl, split='train').select_columns(['text']))
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def check_local_file(path):
    """Raise ValueError naming the file (and the line) for anything that is not a non-empty .txt
    document or a .jsonl file of {"text": ...} objects, before any tokenizing."""
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist; pass .txt files (one document each) or .jsonl files ({{'text': ...}} per line)")
    if not path.endswith(('.txt', '.jsonl')):
        raise ValueError(f"{path}: expected a .txt (one document) or a .jsonl file")
    if path.endswith('.jsonl'):
        jsonl_texts(path)  # every line a {"text": ...} object
    else:
        read_text(path)  # empty or not UTF-8


def encode_document(example):
    from tokenizer import EOT, get_encoding
    ids = get_encoding().encode_ordinary(example['text'])
    ids.append(EOT)  # marks the document boundary for the next one
    return {'ids': ids, 'len': len(ids)}


def write_split(dset, path, desc):
    """Concatenate the 'ids' column into a uint16 memmap, in shards so memory stays small."""
    from tqdm import tqdm
    total = int(np.sum(dset['len'], dtype=np.uint64))
    tmp = f"{path}.partial"  # the same name every run: a killed run leaves no pile of copies
    arr = np.memmap(tmp, dtype=np.uint16, mode='w+', shape=(total,))
    n_shards = min(1024, len(dset))
    idx = 0
    for i in tqdm(range(n_shards), desc=desc):
        shard = dset.shard(num_shards=n_shards, index=i, contiguous=True).with_format('numpy')
        ids = np.concatenate(shard['ids'])
        arr[idx:idx + len(ids)] = ids
        idx += len(ids)
    arr.flush()
    del arr
    os.replace(tmp, path)  # never a half-written train.bin in place of a good one
    return total


def prepare(files, out_dir, num_proc, hf_name='Skylion007/openwebtext', hf_revision=''):
    """{'train': n_tokens, 'val': n_tokens} after writing out_dir/{train,val}.bin."""
    dset = load_documents(files, hf_name, hf_revision, num_proc)
    if len(dset) < 2:
        raise ValueError(f"need at least 2 documents to split into train and val, got {len(dset)}")
    split = dset.train_test_split(test_size=VAL_FRACTION, seed=SPLIT_SEED, shuffle=True)
    split['val'] = split.pop('test')
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for name, part in split.items():
        part = part.map(encode_document, remove_columns=part.column_names, desc=f'tokenizing {name}',
                        num_proc=num_proc if num_proc > 1 else None)
        counts[name] = write_split(part, os.path.join(out_dir, f'{name}.bin'), f'writing {name}.bin')
        print(f"{name}: {len(part):,} documents, {counts[name]:,} tokens")
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('files', nargs='*', help='local .txt / .jsonl files instead of the hub')
    p.add_argument('--out_dir', default=HERE)
    p.add_argument('--num_proc', type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument('--hf_name', default='Skylion007/openwebtext')
    p.add_argument('--hf_revision', default='')
    args = p.parse_args()
    check_destination(args.out_dir, kind='dir')
    prepare(args.files, args.out_dir, args.num_proc, args.hf_name, args.hf_revision)


if __name__ == '__main__':
    errors.run(main)
