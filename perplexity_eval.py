"""
Zero-shot perplexity of a GPT-2-family model on WikiText-103, WikiText-2 and LAMBADA.

    python perplexity_eval.py gpt2                              # all three, one table like the paper's
    python perplexity_eval.py out/krony_96m wiki103 --json out/wt103.json
    python perplexity_eval.py checks/kron_384_3072_1_prune.pt lambada --stride 512   # sliding windows
    python perplexity_eval.py out/tiny --text_file notes.txt --protocol token

MODEL is a project checkpoint, a save_pretrained directory (e.g. from krony_to_gpt.py) or a hub
name. Datasets: wiki103 (HF wikitext-103-v1), wiki2 (wikitext-2-v1), lambada (HF `lambada`, the
original lowercased release) and lambada_openai (OpenAI's detokenized jsonl); test split unless
--split valid.

The paper's protocol (the default): the split's rows joined with "\\n\\n", tokenized with the
model's tokenizer (GPT-2 BPE for GPT-2 models; a character model's own vocabulary), windows of
max_length tokens (default: the model's block_size) every stride tokens (default max_length),
following the Hugging Face perplexity guide: a window scores only the tokens after the previous
window's end, the first token of the text is never predicted, and the last partial window counts.
--protocol window: ppl = exp(mean over windows of the window's mean NLL) (the paper);
--protocol token:  ppl = exp(total NLL / scored tokens).
Bits per byte, which compares models with different tokenizers: total NLL / ln 2 / the UTF-8
bytes of the scored text (all of it but the first token).

Data: with --data_dir DIR (or KRONY_DATA_DIR) the original files are read from DIR
(wikitext-103-v1/wiki.test.tokens, wikitext-2-v1/wiki.test.tokens, lambada/lambada_test_plain_text.txt,
lambada/lambada_test.jsonl; the archives' own folder names work too). Otherwise HF `datasets`
when the hub answers, and else the copies shipped in this repository's data/ folder.
"""

import argparse
import contextlib
import importlib.util
import json
import math
import os
import sys
import time

import torch

import errors
from checkpoint import load_model
from sources import hub_reachable, model_source
from outputs import atomic_write, check_destination, output_lock
from texts import jsonl_texts, read_text, wikitext_rows
from tokenizer import GPT2BPE, tokenizer_for
from losses import token_nll

REPO_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'texts')
SPLITS = ('test', 'valid')

# name -> what it is, where the hub keeps it, and the original files (relative to a data folder);
# the first candidate is the layout of this repository's data/, the others the archives' own folders
DATASETS = {
    'wiki103': dict(title='wikitext-103', label='wikitext-103-v1 {split} (tokenized)',
                    hub=('Salesforce/wikitext', 'wikitext-103-v1'), reader='wikitext',
                    files={s: [f'wikitext-103-v1/wiki.{s}.tokens', f'wikitext-103/wiki.{s}.tokens'] for s in SPLITS}),
    'wiki2': dict(title='wikitext-2', label='wikitext-2-v1 {split} (tokenized)',
                  hub=('Salesforce/wikitext', 'wikitext-2-v1'), reader='wikitext',
                  files={s: [f'wikitext-2-v1/wiki.{s}.tokens', f'wikitext-2/wiki.{s}.tokens'] for s in SPLITS}),
    'lambada': dict(title='LAMBADA', label='lambada {split} (original, lowercased)',
                    hub=('cimec/lambada', None), reader='lines',
                    files={'test': ['lambada/lambada_test_plain_text.txt', 'lambada_test_plain_text.txt'],
                           'valid': ['lambada/lambada_development_plain_text.txt',
                                     'lambada_development_plain_text.txt']}),
    'lambada_openai': dict(title='LAMBADA (OpenAI)', label='lambada_openai {split} (detokenized jsonl)',
                           hub=('EleutherAI/lambada_openai', 'default'), reader='jsonl',
                           files={'test': ['lambada/lambada_test.jsonl', 'lambada_test.jsonl']}),
}
PAPER_SETS = ('wiki103', 'wiki2', 'lambada')  # the columns of the paper's table
PROTOCOLS = {'window': 'window-mean', 'token': 'token-mean'}


# -----------------------------------------------------------------------------
# data

def _check_name(name, split):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose test or valid")
    if split not in DATASETS[name]['files']:
        raise ValueError(f"{name} has no {split} split; only {', '.join(DATASETS[name]['files'])}")


def data_source(name, split='test', data_dir=None):
    """Where `name`'s split is read from: a local file path, or 'hf:REPO[:CONFIG]'.
    An explicit data_dir (or KRONY_DATA_DIR) is used alone; otherwise the hub, then data/."""
    _check_name(name, split)
    spec = DATASETS[name]
    data_dir = data_dir or os.environ.get('KRONY_DATA_DIR') or None
    candidates = spec['files'][split]
    if not data_dir and importlib.util.find_spec('datasets') is not None and hub_reachable():
        repo, config = spec['hub']
        return f"hf:{repo}" + (f":{config}" if config else '')
    for rel in candidates:
        path = os.path.join(data_dir or REPO_DATA, rel)
        if os.path.isfile(path):
            return path
    where = f"in {data_dir}" if data_dir else "on the hub (unreachable or datasets missing) nor in data/"
    raise ValueError(f"{name} {split} not found {where}: pass --data_dir DIR (or set KRONY_DATA_DIR) to a "
                     f"folder holding {' or '.join(candidates)}, or install `datasets` with access to "
                     f"the Hugging Face hub")


def _read_file(path, reader):
    """The rows of a local data file, read as each data set's HF loader reads it, so that the rows
    (and the joined text) are identical; a file that is not what it should be raises ValueError
    naming it (and the line, for jsonl)."""
    if reader == 'wikitext':
        return wikitext_rows(path)
    if reader == 'jsonl':
        return jsonl_texts(path)
    return read_text(path).splitlines()  # empty or not UTF-8 (e.g. a binary file): one line naming it


def load_texts(name, split='test', data_dir=None):
    """The split's rows as HF's `datasets` gives them (list of str)."""
    source = data_source(name, split, data_dir)
    if not source.startswith('hf:'):
        return _read_file(source, DATASETS[name]['reader'])
    from datasets import load_dataset
    repo, config = DATASETS[name]['hub']
    try:
        ds = load_dataset(repo, config, split='validation' if split == 'valid' else 'test')
    except Exception as e:  # the hub answered but the download failed: say so in one line
        raise ValueError(f"load_dataset({repo!r}, {config!r}) failed ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); pass --data_dir DIR with the "
                         f"original files instead") from None
    return list(ds['text'])


def eval_text(name, split='test', data_dir=None):
    """The text the paper's protocol tokenizes: the rows joined with "\\n\\n"."""
    return "\n\n".join(load_texts(name, split, data_dir))


def tokenize(text, tok=None):
    """Token ids of text, a 1-D long tensor (GPT-2 BPE unless a tokenizer.py tokenizer is given)."""
    return torch.tensor((tok or GPT2BPE()).encode(text), dtype=torch.long)


def bits_per_byte(res, text, ids, tok):
    """Total NLL in bits over the UTF-8 bytes of the scored text (every token but the first)."""
    n_bytes = len(text.encode('utf-8')) - tok.token_bytes(int(ids[0]))
    return res['nll_sum'] / math.log(2) / n_bytes, n_bytes


# -----------------------------------------------------------------------------
# the protocol

def window_spans(n_tokens, max_length, stride):
    """[(begin, end, n_scored)] of the HF perplexity guide's loop. A window scores the tokens after
    the previous window's end (its context is not scored), but its first token is never predicted,
    so n_scored = min(end - prev_end, end - begin - 1). A window that would score nothing (a last
    window of one token when stride == max_length) is dropped: HF's loop would average in a nan."""
    if max_length < 2:
        raise ValueError(f"max_length={max_length} must be at least 2 (a window predicts its tokens after the first)")
    if not 1 <= stride <= max_length:
        raise ValueError(f"stride={stride} must be between 1 and max_length={max_length}")
    spans, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + max_length, n_tokens)
        n_scored = min(end - prev_end, end - begin - 1)
        if n_scored > 0:
            spans.append((begin, end, n_scored))
        prev_end = end
        if end == n_tokens:
            break
    return spans


@torch.inference_mode()
def window_nll(model, ids, spans, batch_size=8, device='cpu', progress=False):
    """(sum of NLL, number scored) per window, as two float64 / int64 tensors of len(spans).
    Windows of equal length (all but possibly the last) run in batches of batch_size."""
    from tqdm import tqdm
    sums = torch.zeros(len(spans), dtype=torch.float64)
    counts = torch.tensor([s[2] for s in spans], dtype=torch.long)
    groups = []  # runs of consecutive windows with the same length
    for i, (b, e, _) in enumerate(spans):
        if groups and groups[-1][1] == e - b and len(groups[-1][0]) < batch_size:
            groups[-1][0].append(i)
        else:
            groups.append(([i], e - b))
    # in a log file (not a terminal) a line every 5 s or so, not a redraw every 0.1 s
    bar = tqdm(total=len(spans), desc='windows', unit='win', file=sys.stderr, disable=not progress,
               leave=False, dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 5)
    for idx, T in groups:
        x = torch.stack([ids[spans[i][0]:spans[i][1]] for i in idx]).to(device)  # (B, T)
        logits = model(x)[0]  # (B, T, vocab); [0] also takes HF's ModelOutput.logits
        nll = token_nll(logits[:, :-1], x[:, 1:])  # (B, T - 1)
        k = counts[idx].to(device)
        scored = torch.arange(T - 1, device=device) >= (T - 1 - k)[:, None]  # the last k predictions
        sums[idx] = torch.where(scored, nll, 0.0).sum(1).double().cpu()  # where: an unscored inf stays out
        bar.update(len(idx))
    bar.close()
    return sums, counts


def perplexity(model, ids, max_length, stride=None, batch_size=8, device='cpu', protocol='window',
               progress=False):
    """dict(ppl, nll, nll_sum, n_tokens, n_scored, n_windows, protocol, max_length, stride) of a
    1-D id tensor; nll is the protocol's mean, nll_sum the total over scored tokens (nats)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    stride = stride or max_length
    spans = window_spans(len(ids), max_length, stride)
    if not spans:
        raise ValueError(f"the text has {len(ids)} tokens; at least 2 are needed")
    sums, counts = window_nll(model, ids, spans, batch_size, device, progress)
    if protocol == 'window':
        nll = (sums / counts).mean().item()
    else:
        nll = (sums.sum() / counts.sum()).item()
    return dict(ppl=math.exp(nll), nll=nll, nll_sum=sums.sum().item(), n_tokens=len(ids), n_scored=int(counts.sum()),
                n_windows=len(spans), protocol=protocol, max_length=max_length, stride=stride)


def describe(res, what):
    sliding = ' (sliding)' if res['stride'] < res['max_length'] else ''
    return (f"{PROTOCOLS[res['protocol']]}, max_length {res['max_length']}, stride {res['stride']}{sliding}, "
            f"{what}, {res['n_tokens']:,} tokens, {res['n_scored']:,} scored in {res['n_windows']:,} windows")


# -----------------------------------------------------------------------------
# command line

def write_json(obj, path):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + '\n'), mode='w')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='checkpoint file, save_pretrained directory or hub name')
    p.add_argument('dataset', nargs='?', help=f"one of {', '.join(DATASETS)}; default: {', '.join(PAPER_SETS)}")
    p.add_argument('--stride', type=int, help='default: max_length (no overlap)')
    p.add_argument('--max_length', type=int, help="window length; default: the model's block_size")
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--data_dir', help='folder with the original files (default: $KRONY_DATA_DIR)')
    p.add_argument('--json', help='also write the results here (replacing only an earlier results file)')
    p.add_argument('--force', action='store_true', help='let --json replace a file that is not a results file')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--protocol', default='window', help='window (the paper) or token')
    p.add_argument('--text_file', help='evaluate this UTF-8 file instead of a data set')
    p.add_argument('--split', default='test', help='test or valid')
    args = p.parse_args()

    # everything the user typed is checked before the (slow) model and evaluation
    if args.protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be window or token, not {args.protocol!r}")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size={args.batch_size} must be at least 1")
    if args.stride is not None and args.stride < 1:
        raise ValueError(f"--stride={args.stride} must be at least 1")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"--device {args.device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch has no CUDA device; use --device cpu")
    if args.text_file and args.dataset:
        raise ValueError("give either a dataset or --text_file, not both")
    model_source(args.model)  # a missing path or an unreachable hub name fails here, not after the data
    if args.json:
        check_json_destination(args.json, args.force, [args.model, args.text_file, args.data_dir])
    with output_lock(args.json) if args.json else contextlib.nullcontext():
        evaluate(args, device)


def check_json_destination(path, force, inputs):
    """--json may replace an earlier results file of this script; anything else only with --force."""
    check_destination(path, inputs=inputs)
    if os.path.exists(path) and not force:
        try:
            with open(path, encoding='utf-8') as f:
                ours = isinstance(json.load(f).get('results'), dict)
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise ValueError(f"{path} exists and is not a results file of perplexity_eval.py; pass --force to "
                             f"replace it")


def evaluate(args, device):
    texts = {}  # column name -> (text, description of the data)
    if args.text_file:
        texts[os.path.basename(args.text_file)] = (read_text(args.text_file), args.text_file)
    else:
        for name in [args.dataset] if args.dataset else PAPER_SETS:
            source = data_source(name, args.split, args.data_dir)
            label = DATASETS[name]['label'].format(split=args.split)
            texts[name] = (eval_text(name, args.split, args.data_dir), f"{label} from {source}")

    model, ckpt = load_model(args.model)
    model.to(device).eval()
    tok = tokenizer_for(model, ckpt, args.model)
    block = model.config.block_size
    max_length = args.max_length or block
    if not 2 <= max_length <= block:
        raise ValueError(f"--max_length={max_length} must be between 2 and the model's block_size={block}")
    stride = args.stride or max_length
    if stride > max_length:
        raise ValueError(f"--stride={stride} must not exceed max_length={max_length}")

    results = {}
    for name, (text, what) in texts.items():
        ids = tokenize(text, tok)
        t0 = time.time()
        res = perplexity(model, ids, max_length, stride, args.batch_size, device, args.protocol, progress=True)
        res['bpb'], res['n_bytes'] = bits_per_byte(res, text, ids, tok)
        res.update(description=describe(res, what), seconds=round(time.time() - t0, 2), tokenizer=tok.describe())
        if name in DATASETS:
            res.update(dataset=DATASETS[name]['label'].format(split=args.split), split=args.split)
        results[name] = res

    n_paper, n_nano = model.num_params('paper'), model.num_params('nanogpt')
    titles = [DATASETS[n]['title'] if n in DATASETS else n for n in results]
    mw = max(len(args.model), 14)
    widths = [max(len(t), 8) for t in titles]
    print(f"{'':<{mw}}  {'params':>12}  " + '  '.join(f"{t:>{w}}" for t, w in zip(titles, widths)))
    for key, label, fmt in (('ppl', args.model, '.2f'), ('bpb', 'bits per byte', '.4f')):
        params = f"{n_paper:>12,}" if key == 'ppl' else ' ' * 12
        print(f"{label:<{mw}}  {params}  " + '  '.join(f"{format(r[key], fmt):>{w}}"
                                                      for r, w in zip(results.values(), widths)))
    print(f"tokenizer: {tok.describe()}; params: as the paper counts (position embeddings included, "
          f"tied embedding once); nanoGPT's count: {n_nano:,}")
    for t, r in zip(titles, results.values()):
        print(f"{t}: {r['description']}")

    if args.json:
        write_json(dict(model=args.model, params_paper=n_paper, params_nanogpt=n_nano, block_size=block,
                        device=str(device), results=results), args.json)
        print(f"wrote {args.json}")


if __name__ == '__main__':
    errors.run(main)
