"""
The pieces of train.py's story that hold no state of a run, importable by the tests: the data
(batches at offsets that every process draws alike), the processes (devices, RNG states, the
collective evaluation and checks) and the progress line's estimate.
"""

import os
import random
import subprocess
import time

import numpy as np
import torch
import torch.distributed as dist

from tokenizer import read_meta

ROOT = os.path.dirname(os.path.abspath(__file__))


# -----------------------------------------------------------------------------
# data

def shown(dataset):
    """How messages name a dataset: data/<name>, or the absolute directory given."""
    return dataset if os.path.isabs(dataset) else f"data/{dataset}"


def data_paths(dataset):
    """({'train': path, 'val': path}, meta dict or None) of data/<dataset>/ or an absolute directory."""
    data_dir = os.path.join(ROOT, 'data', dataset)  # an absolute dataset path replaces the prefix
    paths = {split: os.path.join(data_dir, f'{split}.bin') for split in ('train', 'val')}
    for path in paths.values():
        if not os.path.isfile(path):
            prepare = (f"a data/<name>/prepare.py --out_dir {data_dir}" if os.path.isabs(dataset)
                       else f"python data/{dataset}/prepare.py")
            raise ValueError(f"{path} does not exist; create it with {prepare}")
    meta_path = os.path.join(data_dir, 'meta.pkl')
    return paths, read_meta(meta_path) if os.path.isfile(meta_path) else None


def char_vocab(meta):
    """The part of a dataset's meta.pkl that a checkpoint keeps (None for GPT-2 BPE datasets)."""
    if not meta or 'itos' not in meta:
        return None
    return {k: meta[k] for k in ('vocab_size', 'itos', 'unk') if k in meta}


def draw_offsets(gen, n_tokens, block_size, shape):
    """Start positions of training sequences, from the generator that every process shares."""
    return torch.randint(n_tokens - block_size, shape, generator=gen)


def get_batch(path, offsets, block_size, device):
    data = np.memmap(path, dtype=np.uint16, mode='r')  # reopened per batch: a long-lived memmap grows in memory
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in offsets.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in offsets.tolist()])
    return x.to(device), y.to(device)


def rng_state():
    return {'torch': torch.get_rng_state(), 'python': random.getstate(), 'numpy': np.random.get_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


# -----------------------------------------------------------------------------
# processes

def dtype_and_device(c):
    """(device string, device type, dtype name), checked; under torchrun each process takes its GPU."""
    dev = c.device if c.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device_type = torch.device(dev).type
    except RuntimeError:
        raise ValueError(f"device={c.device!r} is not a torch device (auto, cpu, cuda, cuda:1, mps)") from None
    if device_type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"device={c.device!r} but this torch sees no CUDA GPU; use --device=cpu")
    if device_type not in ('cpu', 'cuda'):
        raise ValueError(f"device={c.device!r}: train.py runs on cpu or cuda")
    dtype = c.dtype
    if dtype == 'auto':
        dtype = ('bfloat16' if torch.cuda.is_bf16_supported() else 'float16') if device_type == 'cuda' else 'float32'
    if dtype not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f"dtype={dtype!r} is not one of auto, float32, bfloat16, float16")
    return dev, device_type, dtype


def git_commit():
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or 'unknown'
    except OSError:
        return 'unknown'


@torch.no_grad()
def evaluate(model, paths, offsets, block_size, device, ctx, it, stop=lambda: False, on_forward=lambda: None,
             progress=True):
    """{split: mean loss} over the same batches every time (offsets[split]: (eval_iters, batch_size)),
    which the processes share out; None as soon as stop() says that a process was asked to stop.
    on_forward() runs before each batch's forward, so that InRank can count them."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    beat, out = Heartbeat(on=progress), {}
    for split, path in paths.items():
        n, total = len(offsets[split]), torch.zeros((), device=device)
        # every process takes as many turns, as a distributed sampler pads the processes' shares,
        # and asks at each whether a signal came: a long evaluation stops within one batch
        turns = range(rank, -(-n // world) * world, world)
        for i, k in enumerate(turns):
            beat(f"eval {it} | {split} batch {i}/{len(turns)}")
            if stop():
                return None
            on_forward()
            if k < n:
                x, y = get_batch(path, offsets[split][k], block_size, device)
                with ctx:
                    total += model(x, y)[1].float()
        if dist.is_initialized():
            dist.all_reduce(total)
        out[split] = total.item() / n
    return out


def any_process(flag, device):
    """Whether flag is set on any process."""
    if not dist.is_initialized():
        return flag
    flags = torch.tensor(float(flag), device=device)
    dist.all_reduce(flags)
    return flags.item() > 0


def process_states(model, it, name):
    """([RNG state], [weight sums]) of every process, checked equal so that a process that drifted
    from the others is caught instead of silently saved (as `name`)."""
    mine = (rng_state(), torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu())
    states = [mine]
    if dist.is_initialized():
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, mine)
    if any(not torch.equal(s[1], mine[1]) for s in states):
        raise ValueError(f"processes hold different weights at iteration {it}; not saving {name}")
    return [s[0] for s in states], [s[1] for s in states]


def benchmark_ppl(model, names, vocab, ctx, device, texts):
    """Perplexities with perplexity_eval.py's default protocol, for the log only (never for
    selection); texts keeps the tokenized texts from one call to the next."""
    import perplexity_eval  # needs the evaluation text: imported only when asked for
    if not texts:
        from tokenizer import tokenizer_for
        tok = tokenizer_for(model, {'vocab': vocab})
        texts.update({name: perplexity_eval.tokenize(perplexity_eval.eval_text(name), tok) for name in names})
    model.eval()
    with ctx:
        out = {name: perplexity_eval.perplexity(model, ids, model.config.block_size, device=device,
                                                progress=True)['ppl']
               for name, ids in texts.items()}
    model.train()
    return out


# -----------------------------------------------------------------------------
# progress

def eta(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


ETA_WINDOW = 20  # recent optimizer steps whose mean time predicts the rest: a slow stretch is soon forgotten


def evals_after(it, max_iters, eval_interval):
    """How many evaluations the loop runs after iteration `it`: at every multiple of eval_interval
    in (it, max_iters], and one at max_iters if that is not a multiple."""
    n = max_iters // eval_interval - it // eval_interval
    return max(0, n) + (max_iters % eval_interval != 0 and it < max_iters)


def eta_seconds(step_times, steps_left, evals_left, eval_times, eval_steps):
    """Seconds to the end of the run, or None before any step was timed: steps_left steps at the
    mean of step_times (the recent steps, evaluations not included), plus evals_left evaluations,
    each as long as the last one measured (eval_times; the caller leaves out a run's first
    evaluation and first step, which pay one-time costs) or, before one was, as long as
    eval_steps steps."""
    if not step_times:
        return None
    step = sum(step_times) / len(step_times)
    each_eval = eval_times[-1] if eval_times else eval_steps * step
    return steps_left * step + evals_left * each_eval


class Heartbeat:
    """Prints a line of progress at most every `every` seconds, so that a long evaluation is
    never silent."""

    def __init__(self, every=5.0, on=True):
        self.every, self.on, self.last = every, on, time.time()

    def __call__(self, text):
        if self.on and time.time() - self.last >= self.every:
            print(text, flush=True)
            self.last = time.time()
