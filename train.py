"""
Train a GPT (dense, Kronecker or low-rank MLPs) on one device or many.

    python train.py config/demo_teacher.py                         # one device
    python train.py config/krony_81m_vl.py --batch_size=12         # --key=value overrides
    torchrun --standalone --nproc_per_node=8 train.py config/krony_96m_prune.py
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --master_port=29500 \\
        --nproc_per_node=8 train.py config/krony_96m_prune.py      # two nodes

Config: the defaults below, then config files (plain assignments), then --key=value overrides,
all type-checked by configurator.py. Data: data/<dataset>/{train,val}.bin (uint16 tokens) from
data/<dataset>/prepare.py. Checkpoints: out_dir/ckpt.pt (latest) and out_dir/best.pt (lowest val
loss). SIGTERM or Ctrl-C finishes the current step, saves ckpt.pt and exits 0; --init_from=resume
continues the same run.
"""

import math
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import load_config
from inrank import start as inrank_start, update as inrank_update
from model import GPT, GPTConfig, load_checkpoint, load_model, model_from_checkpoint, save_checkpoint

# -----------------------------------------------------------------------------
# default config: every name below can be set by a config file or --key=value
# I/O
out_dir = 'checks/out'
init_from = 'scratch'   # 'scratch' | 'resume' (out_dir/ckpt.pt) | HF name or dir ('gpt2', ...) | checkpoint path
eval_interval = 500
eval_iters = 100        # batches per split in the train/val loss
eval_ppl = []           # perplexity_eval.py benchmarks reported at each eval, e.g. ['wiki103']; never used for selection
log_interval = 10
wandb_log = False       # WANDB_MODE=offline works without a network
wandb_project = 'krony-pt'
wandb_run_name = 'run'
# data
dataset = 'openwebtext'           # data/<dataset>/ (or an absolute directory) with train.bin, val.bin
gradient_accumulation_steps = 5   # global micro-steps per optimizer step, shared out among the processes
batch_size = 24                   # sequences per micro-step
block_size = 1024
# model, for init_from='scratch' (other inits take the architecture from the checkpoint's model_args)
n_layer = 12
n_head = 12
n_embd = 768
bias = True
vocab_size = 0          # 0: from data/<dataset>/meta.pkl if there is one, else GPT-2's 50257
mlp = 'dense'           # 'dense' | 'kron' | 'lowrank'
kron_dim1 = 0
kron_dim2 = 0
kron_factors = 1
kron_scalers = False
lowrank_rank = 0
time_weighting = False
time_mixing = False
time_mix_init = 0.0     # time-mixing's starting share of the previous position (0 = identity, 1 = full shift)
dropout = 0.0           # set on every init: it changes no weights
# knowledge distillation: loss = (1 - kd_alpha) * LM + kd_alpha * T^2 * KL(teacher_T || student_T)
kd_teacher = ''         # '' (off) | HF name or dir | checkpoint path
kd_alpha = 0.5
kd_temperature = 2.0
# InRank stage 1 (inrank.py; needs mlp='lowrank'): ranks start at init_modes + buffer_modes and grow
inrank = False
inrank_init_modes = 2
inrank_buffer_modes = 100
inrank_threshold = 0.9  # explained ratio that the kept ranks must pass
inrank_warmup_iter = 200
inrank_gap_iter = 25
# AdamW
learning_rate = 6e-4
max_iters = 600000
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0         # 0 disables
# learning rate: linear warm-up, cosine decay to min_lr at lr_decay_iters, then min_lr
decay_lr = True
warmup_iters = 2000
lr_decay_iters = 600000
min_lr = 6e-5
# system
device = 'auto'         # 'auto' = cuda if available, else cpu; under torchrun each process takes cuda:LOCAL_RANK
dtype = 'auto'          # 'auto' = bfloat16 on GPUs with bf16, float16 (GradScaler) on other GPUs, float32 on CPU
compile = False         # torch.compile the model
seed = 1337
DEFAULTS = {k: v for k, v in globals().items()
            if not k.startswith('_') and isinstance(v, (bool, int, float, str, list))}

ROOT = os.path.dirname(os.path.abspath(__file__))


# -----------------------------------------------------------------------------
# pieces with no state, importable by tests

def get_lr(it, c):
    if not c.decay_lr:
        return c.learning_rate
    if it < c.warmup_iters:
        return c.learning_rate * (it + 1) / (c.warmup_iters + 1)
    if it >= c.lr_decay_iters:
        return c.min_lr
    ratio = (it - c.warmup_iters) / (c.lr_decay_iters - c.warmup_iters)
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c.learning_rate - c.min_lr)


def log_softmax(logits):
    """F.log_softmax over the last dim, also fast on the (vocab, B*T) layout of GPT.head on CPU."""
    if logits.stride(-1) == 1:
        return F.log_softmax(logits, dim=-1)
    return logits - torch.logsumexp(logits, -1, keepdim=True)


def kd_kl(student_logits, teacher_logits, temperature):
    """Mean over positions of KL(softmax(teacher/T) || softmax(student/T)); logits (..., vocab)."""
    s = log_softmax(student_logits.float() / temperature)
    t = log_softmax(teacher_logits.float() / temperature)
    return (t.exp() * (t - s)).sum(-1).mean()


def distill_loss(lm_loss, student_logits, teacher_logits, alpha, temperature):
    """Hinton et al.'s mix; T^2 keeps the soft term's gradient scale independent of T."""
    return (1 - alpha) * lm_loss + alpha * temperature ** 2 * kd_kl(student_logits, teacher_logits, temperature)


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


def git_commit():
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or 'unknown'
    except OSError:
        return 'unknown'


def data_paths(dataset):
    data_dir = os.path.join(ROOT, 'data', dataset)  # an absolute dataset path replaces the prefix
    paths = {split: os.path.join(data_dir, f'{split}.bin') for split in ('train', 'val')}
    for path in paths.values():
        if not os.path.isfile(path):
            raise ValueError(f"{path} does not exist; create it with python data/{dataset}/prepare.py")
    meta_path = os.path.join(data_dir, 'meta.pkl')
    meta = None
    if os.path.isfile(meta_path):
        with open(meta_path, 'rb') as f:
            meta = pickle.load(f)
    return paths, meta


def build_model(c, data_vocab):
    """(model, model_args, checkpoint or None) as init_from says."""
    if c.init_from == 'scratch':
        args = dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size, bias=c.bias,
                    vocab_size=c.vocab_size or data_vocab or 50257, mlp=c.mlp, kron_dim1=c.kron_dim1,
                    kron_dim2=c.kron_dim2, kron_factors=c.kron_factors, kron_scalers=c.kron_scalers,
                    lowrank_rank=c.lowrank_rank, time_weighting=c.time_weighting, time_mixing=c.time_mixing,
                    time_mix_init=c.time_mix_init,
                    dropout=c.dropout)
        model = GPT(GPTConfig(**args))
        return model, asdict(model.config), None
    path = os.path.join(c.out_dir, 'ckpt.pt') if c.init_from == 'resume' else c.init_from
    if c.init_from == 'resume' or os.path.isfile(path) or path.endswith(('.pt', '.pth', '.ckpt')):
        ckpt = load_checkpoint(path)
        ckpt['model_args'] = dict(ckpt['model_args'], dropout=c.dropout)
        try:
            model = model_from_checkpoint(ckpt)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"{path}: weights do not match its model_args ({str(e).splitlines()[0]})") from None
        return model, ckpt['model_args'], ckpt
    model = GPT.from_pretrained(c.init_from, dropout=c.dropout)
    return model, asdict(model.config), None


@torch.no_grad()
def estimate_loss(model, paths, eval_offsets, c, ctx, device, rank, world):
    """Mean loss over the same eval_iters batches every time; processes split the batches."""
    model.eval()
    out = {}
    for split, path in paths.items():
        total = torch.zeros((), device=device)
        for k in range(rank, c.eval_iters, world):
            x, y = get_batch(path, eval_offsets[split][k], c.block_size, device)
            with ctx:
                total += model(x, y)[1].float()
        if world > 1:
            dist.all_reduce(total)
        out[split] = total.item() / c.eval_iters
    model.train()
    return out


def benchmark_ppl(model, texts, ctx, device):
    """Perplexities with perplexity_eval.py's default protocol, for the log only (never for selection)."""
    import perplexity_eval
    model.eval()
    with ctx:
        out = {name: perplexity_eval.perplexity(model, ids, model.config.block_size, device=device)['ppl']
               for name, ids in texts.items()}
    model.train()
    return out


# -----------------------------------------------------------------------------

def main(argv):
    c = SimpleNamespace(**load_config(DEFAULTS, argv))
    stop = {'signal': None}

    def on_signal(signum, frame):
        stop['signal'] = signal.Signals(signum).name
        signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C kills at once

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    # processes and devices
    dev = c.device if c.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')
    ddp = 'RANK' in os.environ
    rank, world = 0, 1
    if ddp:
        dist.init_process_group(backend='nccl' if dev.startswith('cuda') else 'gloo')
        rank, world = dist.get_rank(), dist.get_world_size()
        if dev.startswith('cuda'):
            dev = f"cuda:{os.environ['LOCAL_RANK']}"
            torch.cuda.set_device(dev)
    master = rank == 0
    device_type = 'cuda' if dev.startswith('cuda') else 'cpu'
    for key in ('eval_interval', 'eval_iters', 'log_interval', 'batch_size', 'gradient_accumulation_steps'):
        if getattr(c, key) < 1:
            raise ValueError(f"{key}={getattr(c, key)} must be at least 1")
    if c.gradient_accumulation_steps % world:
        raise ValueError(f"gradient_accumulation_steps={c.gradient_accumulation_steps} must be a multiple of "
                         f"the {world} processes, so that every process runs the same number of micro-steps")
    local_steps = c.gradient_accumulation_steps // world
    tokens_per_iter = c.gradient_accumulation_steps * c.batch_size * c.block_size
    dtype = c.dtype
    if dtype == 'auto':
        dtype = ('bfloat16' if torch.cuda.is_bf16_supported() else 'float16') if device_type == 'cuda' else 'float32'
    if dtype not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f"dtype={dtype!r} is not one of auto, float32, bfloat16, float16")
    ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type, dtype=getattr(torch, dtype))
    torch.manual_seed(c.seed + rank)

    # data: offsets of the global micro-batches come from one generator shared by every process
    paths, meta = data_paths(c.dataset)
    n_train = os.path.getsize(paths['train']) // 2
    for split, path in paths.items():
        if os.path.getsize(path) // 2 <= c.block_size:
            raise ValueError(f"{path} has {os.path.getsize(path) // 2} tokens, fewer than block_size + 1 = {c.block_size + 1}")
    data_gen = torch.Generator().manual_seed(c.seed)
    eval_gen = torch.Generator().manual_seed(c.seed + 1)
    eval_offsets = {split: draw_offsets(eval_gen, os.path.getsize(p) // 2, c.block_size, (c.eval_iters, c.batch_size))
                    for split, p in paths.items()}

    # model, optimizer, and the state of a resumed run
    model, model_args, ckpt = build_model(c, meta['vocab_size'] if meta else 0)
    if c.block_size > model_args['block_size']:
        raise ValueError(f"block_size={c.block_size} is longer than the model's {model_args['block_size']} positions")
    if meta and meta['vocab_size'] > model_args['vocab_size']:
        raise ValueError(f"data/{c.dataset} has {meta['vocab_size']} token ids but the model only "
                         f"{model_args['vocab_size']}; train from scratch or use a GPT-2 BPE dataset")
    model.to(dev)
    if c.inrank and c.init_from != 'resume':  # a resumed run keeps the ranks of its checkpoint
        inrank_start(model, c.inrank_init_modes, c.inrank_buffer_modes)
    optimizer = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), device_type)
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')
    iter_num, best_val_loss = 0, float('inf')
    if c.init_from == 'resume':
        optimizer.load_state_dict(ckpt['optimizer'])
        scaler.load_state_dict(ckpt['scaler'])
        iter_num, best_val_loss = ckpt['iter_num'], ckpt['best_val_loss']
        data_gen.set_state(ckpt['data_rng'])
        if len(ckpt['rng']) == world:  # a different process count cannot continue the same dropout streams
            set_rng_state(ckpt['rng'][rank])
    resumed_at = iter_num if c.init_from == 'resume' else None
    ckpt = None  # free the loaded tensors

    teacher = None
    if c.kd_teacher:
        teacher, _ = load_model(c.kd_teacher)
        if teacher.config.vocab_size != model_args['vocab_size'] or teacher.config.block_size < c.block_size:
            raise ValueError(f"teacher {c.kd_teacher} (vocab {teacher.config.vocab_size}, block "
                             f"{teacher.config.block_size}) does not fit the student (vocab "
                             f"{model_args['vocab_size']}, block_size {c.block_size})")
        teacher.to(dev).eval().requires_grad_(False)

    if master:
        print("config:")
        for k, v in vars(c).items():
            print(f"  {k} = {v!r}")
        print(f"git commit {git_commit()} | torch {torch.__version__} | device {dev} x {world} "
              f"({'ddp ' + dist.get_backend() if ddp else 'single process'}) | dtype {dtype}")
        print(f"model: {model.num_params('paper'):,} parameters (nanoGPT count {model.num_params('nanogpt'):,}) | "
              f"mlp {model_args['mlp']} | {tokens_per_iter:,} tokens per iteration")
    raw_model = model
    if c.compile:
        model = torch.compile(model)
    if ddp:
        model = DDP(model, device_ids=[dev] if device_type == 'cuda' else None)
    if c.eval_ppl and master:
        import perplexity_eval  # needs the evaluation text: imported only when asked for
        ppl_texts = {name: perplexity_eval.tokenize(perplexity_eval.eval_text(name)) for name in c.eval_ppl}
    if c.wandb_log and master:
        import wandb
        wandb.init(project=c.wandb_project, name=c.wandb_run_name, config=vars(c))

    def checkpoint(name):
        # every process contributes its RNG state, and the sum of each of its weight tensors so
        # that a process that drifted from the others is caught instead of silently saved
        mine = (rng_state(), torch.stack([p.detach().double().sum() for p in raw_model.parameters()]).cpu())
        states = [mine]
        if ddp:
            states = [None] * world
            dist.all_gather_object(states, mine)
        if any(not torch.equal(s[1], mine[1]) for s in states):
            raise ValueError(f"processes hold different weights at iteration {iter_num}; not saving {name}")
        if master:
            save_checkpoint({'model': raw_model.state_dict(), 'optimizer': optimizer.state_dict(),
                             'scaler': scaler.state_dict(), 'model_args': model_args, 'config': vars(c),
                             'iter_num': iter_num, 'best_val_loss': best_val_loss,
                             'rng': [s[0] for s in states], 'weight_sums': [s[1] for s in states],
                             'data_rng': data_gen.get_state()}, os.path.join(c.out_dir, name))

    # training loop; every process runs it in lockstep, so saves and evals are collective
    while True:
        if (iter_num % c.eval_interval == 0 or iter_num >= c.max_iters) and iter_num != resumed_at:
            losses = estimate_loss(model, paths, eval_offsets, c, ctx, dev, rank, world)
            if not math.isfinite(losses['val']):
                raise ValueError(f"non-finite val loss at iteration {iter_num}; the last checkpoint is kept")
            extra = benchmark_ppl(raw_model, ppl_texts, ctx, dev) if c.eval_ppl and master else {}
            if master:
                print(f"eval {iter_num} | train {losses['train']:.4f} | val {losses['val']:.4f}"
                      + ''.join(f" | {k} ppl {v:.2f}" for k, v in extra.items()))
                if c.wandb_log:
                    wandb.log({'iter': iter_num, 'train/loss': losses['train'], 'val/loss': losses['val'],
                               **{f'ppl/{k}': v for k, v in extra.items()}})
            if losses['val'] < best_val_loss:
                best_val_loss = losses['val']
                checkpoint('best.pt')
            checkpoint('ckpt.pt')
        if iter_num >= c.max_iters:
            break

        t0 = time.time()
        lr = get_lr(iter_num, c)
        for group in optimizer.param_groups:
            group['lr'] = lr
        # rank r takes its consecutive share of the global micro-batches of this step
        offsets = draw_offsets(data_gen, n_train, c.block_size, (c.gradient_accumulation_steps, c.batch_size))
        loss_sum = torch.zeros((), device=dev)
        for micro in range(local_steps):
            x, y = get_batch(paths['train'], offsets[rank * local_steps + micro], c.block_size, dev)
            if ddp:  # all-reduce the gradients once, on the last micro-step
                model.require_backward_grad_sync = micro == local_steps - 1
            with ctx:
                logits, loss = model(x, y)
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(x)[0]
                    loss = distill_loss(loss, logits, teacher_logits, c.kd_alpha, c.kd_temperature)
            loss_sum += loss.detach().float()
            scaler.scale(loss / local_steps).backward()
        # one all-reduce gives the global mean loss and whether any process was asked to stop
        status = torch.stack([loss_sum / local_steps, torch.tensor(float(stop['signal'] is not None), device=dev)])
        if ddp:
            dist.all_reduce(status)
            status[0] /= world
        step_loss, stopping = status[0].item(), status[1].item() > 0
        if not math.isfinite(step_loss):
            raise ValueError(f"non-finite loss at iteration {iter_num} ({step_loss}); stopped before the "
                             f"optimizer step, the last checkpoint in {c.out_dir} is kept")
        if c.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(raw_model.parameters(), c.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        # methods that change the model between steps hook in here
        if c.inrank:
            changes = inrank_update(raw_model, iter_num + 1, c.inrank_warmup_iter, c.inrank_gap_iter,
                                    c.inrank_threshold, c.inrank_buffer_modes)
            if master and changes:
                print(f"inrank {iter_num} | " + ', '.join(f"{n.removeprefix('transformer.')} {a}->{b}"
                                                          for n, a, b in changes), flush=True)

        dt = time.time() - t0
        if master and (iter_num % c.log_interval == 0 or stopping):
            mfu = (f"{100 * raw_model.estimate_mfu(tokens_per_iter // world, dt):.1f}%"
                   if device_type == 'cuda' else '-')
            print(f"iter {iter_num} | loss {step_loss:.4f} | lr {lr:.3e} | {1000 * dt:.1f} ms/iter | "
                  f"{tokens_per_iter / dt:,.0f} tok/s | mfu {mfu}", flush=True)
        iter_num += 1
        if stopping:
            checkpoint('ckpt.pt')
            if master:
                print(f"stopped by a signal after iteration {iter_num - 1}; saved {c.out_dir}/ckpt.pt, "
                      f"continue with --init_from=resume")
            break
    if ddp:
        dist.destroy_process_group()


if __name__ == '__main__':
    try:
        main(sys.argv[1:])
    except ValueError as e:
        sys.exit(f"error: {e}")
