"""
Train a GPT (dense, Kronecker or low-rank MLPs) on one device or many.

    python train.py config/train_gpt2.py                           # the 81M Krony-PT run
    python train.py config/krony_81m_vl.py --batch_size=12         # --key=value overrides
    torchrun --standalone --nproc_per_node=8 train.py config/krony_96m_prune.py
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --master_port=29500 \\
        --nproc_per_node=8 train.py config/krony_96m_prune.py      # two nodes
    python train.py --help                                         # every key, its default and meaning
    python train.py config/train_gpt2.py --help                    # ... and the value that config gives it

Config: the defaults below and GPTConfig's fields (model.py), then config files (plain
assignments, read in order), then --key=value overrides, all type-checked by configurator.py.
Data: data/<dataset>/{train,val}.bin (uint16 tokens) from data/<dataset>/prepare.py.
Checkpoints: out_dir/ckpt.pt (latest) and out_dir/best.pt (lowest val loss). SIGTERM or Ctrl-C
finishes the current step (or stops the evaluation under way), saves ckpt.pt and exits 0;
--init_from=resume continues the same run. One run at a time writes an out_dir: a second fails at once.
"""

import gc
import math
import os
import signal
import sys
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import asdict, fields
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import errors
from checkpoint import load_checkpoint, load_model, model_from_checkpoint, save_checkpoint
from configurator import load_config, usage
from outputs import check_destination, output_lock
from inrank import Schedule as InRankSchedule, check as inrank_check, start as inrank_start
from losses import distill_loss
from model import GPT, GPTConfig
from sources import model_source
from tokenizer import GPT2_VOCAB, stored_vocab
from train_parts import (ETA_WINDOW, ROOT, any_process, benchmark_ppl, char_vocab, data_paths, draw_offsets,
                         dtype_and_device, eta, eta_seconds, evals_after, evaluate, get_batch, git_commit,
                         process_states, set_rng_state, shown)

# -----------------------------------------------------------------------------
# default config: every name below, and every GPTConfig field (model.py: n_layer, n_embd, mlp,
# kron_dim1, ...), can be set by a config file or --key=value
# I/O
out_dir = 'checks/out'  # where ckpt.pt (latest) and best.pt (lowest val loss) are written
init_from = 'scratch'   # 'scratch' | 'resume' (out_dir/ckpt.pt) | HF name or dir ('gpt2', ...) | checkpoint path
eval_interval = 500     # iterations between evaluations (and checkpoints)
eval_iters = 100        # batches per split in the train/val loss
eval_ppl = []           # perplexity_eval.py benchmarks reported at each eval, e.g. ['wiki103']; never used for selection
log_interval = 10       # iterations between log lines
wandb_log = False       # log to wandb (WANDB_MODE=offline works without a network)
wandb_project = 'krony-pt'
wandb_run_name = 'run'
# data
dataset = 'openwebtext'           # data/<dataset>/ (or an absolute directory) with train.bin, val.bin
gradient_accumulation_steps = 5   # global micro-steps per optimizer step, shared out among the processes
batch_size = 24                   # sequences per micro-step
vocab_size = 0                    # 0: from data/<dataset>/meta.pkl if there is one, else GPT-2's 50257
# knowledge distillation (DistilGPT2's loss; kd_teacher '' turns it off):
# loss = kd_alpha_ce * T^2 * KL(teacher_T || student_T) + kd_alpha_clm * LM + kd_alpha_cos * (1 - cos(h_s, h_t))
kd_teacher = ''         # '' (off) | HF name or dir | checkpoint path of the teacher
kd_temperature = 2.0    # T, the softmax temperature of both models in the KL term
kd_alpha_ce = 0.5       # weight of the soft-target KL term
kd_alpha_clm = 0.5      # weight of the usual next-token loss
kd_alpha_cos = 0.0      # weight of the cosine loss between the last hidden states (needs equal widths)
freeze_pos_emb = False  # keep the position embeddings fixed (DistilGPT2 does)
# InRank stage 1 (inrank.py; needs mlp='lowrank'): ranks start at init_modes + buffer_modes and grow
inrank = False          # grow the low-rank MLP matrices' rank during training
inrank_init_modes = 2   # starting rank, before the buffer
inrank_buffer_modes = 100  # ranks kept beyond the ones found, and the most one check can add
inrank_threshold = 0.9  # explained ratio that the kept ranks must pass
inrank_unit = 'forward'  # what warmup and gap count: 'forward' (InRank's: each forward of a process) | 'step' (optimizer steps)
inrank_warmup_iter = 200  # no rank check up to this count
inrank_gap_iter = 25    # counts between rank checks
# AdamW
learning_rate = 6e-4    # peak learning rate
max_iters = 600000      # optimizer steps in all
weight_decay = 0.1      # on matrices, embeddings and Kronecker factors; none on biases, LayerNorms, scalars
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0         # clip the gradient norm to this; 0 disables
# learning rate: linear warm-up, cosine decay to min_lr at lr_decay_iters, then min_lr
decay_lr = True         # False: a constant learning_rate
warmup_iters = 2000     # steps of linear warm-up
lr_decay_iters = 600000  # step at which the cosine reaches min_lr
min_lr = 6e-5           # learning rate at the end of the cosine
# system
device = 'auto'         # 'auto' = cuda if available, else cpu; under torchrun each process takes cuda:LOCAL_RANK
dtype = 'auto'          # 'auto' = bfloat16 on GPUs with bf16, float16 (GradScaler) on other GPUs, float32 on CPU
compile = False         # torch.compile the model
seed = 1337             # weights of a scratch model, dropout and the data order
DEFAULTS = {**{f.name: f.default for f in fields(GPTConfig)},
            **{k: v for k, v in globals().items()  # config keys are the lower-case names above
               if k.islower() and not k.startswith('_') and isinstance(v, (bool, int, float, str, list))}}


# -----------------------------------------------------------------------------
# the schedule, the model and teacher as the config asks, the checks before anything starts
# (the stateless pieces of the loop are in train_parts.py)

def get_lr(it, c):
    if not c.decay_lr:
        return c.learning_rate
    if it < c.warmup_iters:
        return c.learning_rate * (it + 1) / (c.warmup_iters + 1)
    if it >= c.lr_decay_iters:
        return c.min_lr
    ratio = (it - c.warmup_iters) / (c.lr_decay_iters - c.warmup_iters)
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c.learning_rate - c.min_lr)


def build_model(c, meta):
    """(model, checkpoint to resume or None, character vocabulary or None) as init_from says,
    checked against the dataset (meta: its meta.pkl or None). The character vocabulary travels with
    the run's checkpoints: export and evaluation need it."""
    if c.init_from == 'scratch':
        args = {f.name: getattr(c, f.name) for f in fields(GPTConfig)}
        args['vocab_size'] = c.vocab_size or (meta['vocab_size'] if meta else 0) or GPTConfig.vocab_size
        model, ckpt, source_vocab = GPT(GPTConfig(**args)), None, None
    elif c.init_from == 'resume':
        path = os.path.join(c.out_dir, 'ckpt.pt')
        if not os.path.isfile(path):
            raise ValueError(f"--init_from=resume: {path} does not exist; start with --init_from=scratch or a checkpoint")
        ckpt = load_checkpoint(path)
        if 'optimizer' not in ckpt:
            raise ValueError(f"{path} holds no training state (written by kron_decompose.py or compress.py?); "
                             f"start from it with --init_from={path} instead of resume")
        model, source_vocab = model_from_checkpoint(ckpt, path, dropout=c.dropout), ckpt.get('vocab')
    else:  # a checkpoint's training state is not resumed: its weights start a new run
        model, source = load_model(c.init_from, dropout=c.dropout)
        ckpt, source_vocab = None, stored_vocab(source, c.init_from)
    m, data_vocab = model.config, char_vocab(meta)
    if data_vocab and c.init_from != 'scratch' and (source_vocab or {}).get('itos') != data_vocab['itos']:
        raise ValueError(f"{shown(c.dataset)} is a character set other than the one {c.init_from} was "
                         f"trained on; its ids would mean other tokens")
    if c.block_size > m.block_size:
        raise ValueError(f"block_size={c.block_size} is longer than the model's {m.block_size} "
                         f"positions; use --block_size={m.block_size} (or less)")
    if source_vocab and not data_vocab:
        raise ValueError(f"{c.init_from} was trained on {len(source_vocab['itos'])} characters but "
                         f"{shown(c.dataset)} is not a character dataset (no characters in a meta.pkl); "
                         f"give the character dataset it was trained on")
    if not meta and m.vocab_size < GPT2_VOCAB:
        raise ValueError(f"{shown(c.dataset)} holds GPT-2 BPE tokens (it has no meta.pkl) but the model has "
                         f"only {m.vocab_size} token ids; train it on its own dataset")
    if meta and meta['vocab_size'] > m.vocab_size:
        raise ValueError(f"{shown(c.dataset)} has {meta['vocab_size']} token ids but the model only "
                         f"{m.vocab_size}; train from scratch or use a GPT-2 BPE dataset")
    return model, ckpt, data_vocab or source_vocab


def load_teacher(c, student_args, device):
    """The frozen teacher of kd_teacher, checked against the student's model_args."""
    teacher, _ = load_model(c.kd_teacher)
    tc = teacher.config
    if tc.vocab_size != student_args['vocab_size'] or tc.block_size < c.block_size:
        raise ValueError(f"teacher {c.kd_teacher} (vocab {tc.vocab_size}, block {tc.block_size}) does not "
                         f"fit the student (vocab {student_args['vocab_size']}, block_size {c.block_size})")
    if c.kd_alpha_cos and tc.n_embd != student_args['n_embd']:
        raise ValueError(f"kd_alpha_cos needs equal widths: teacher n_embd {tc.n_embd}, "
                         f"student {student_args['n_embd']}")
    return teacher.to(device).eval().requires_grad_(False)


def check_config(c):
    """Everything that can be checked before any process, data or model is set up."""
    for key in ('eval_interval', 'eval_iters', 'log_interval', 'batch_size', 'gradient_accumulation_steps',
                'block_size'):
        if getattr(c, key) < 1:
            raise ValueError(f"{key}={getattr(c, key)} must be at least 1")
    if c.max_iters < 0:
        raise ValueError(f"max_iters={c.max_iters} must be >= 0")
    if c.kd_teacher and c.kd_temperature <= 0:
        raise ValueError(f"kd_temperature={c.kd_temperature} must be positive")
    # a file in the way fails now, not after the first evaluation; so does a checkpoint to be written
    # over one this run reads (its init_from, its teacher, its data)
    sources = [c.kd_teacher, os.path.join(ROOT, 'data', c.dataset)]
    if c.init_from not in ('scratch', 'resume'):
        sources.append(c.init_from)
    check_destination(c.out_dir, kind='dir')
    for name in ('ckpt.pt', 'best.pt'):
        check_destination(os.path.join(c.out_dir, name), inputs=sources)
    if c.init_from not in ('scratch', 'resume'):
        model_source(c.init_from)
    if c.kd_teacher:
        model_source(c.kd_teacher)


def print_header(c, model, device, world, dtype, tokens_per_iter):
    print("config:")
    for k, v in vars(c).items():
        print(f"  {k} = {v!r}")
    print(f"git commit {git_commit()} | torch {torch.__version__} | device {device} x {world} "
          f"({'ddp ' + dist.get_backend() if dist.is_initialized() else 'single process'}) | dtype {dtype}")
    print(f"model: {model.num_params('paper'):,} parameters (nanoGPT count {model.num_params('nanogpt'):,}) "
          f"| mlp {model.config.mlp} | {tokens_per_iter:,} tokens per iteration", flush=True)
    if c.decay_lr and c.max_iters < c.lr_decay_iters:
        print(f"note: max_iters={c.max_iters} < lr_decay_iters={c.lr_decay_iters}: the run stops before the "
              f"cosine reaches min_lr (lr at the end {get_lr(c.max_iters, c):.3e})", flush=True)


# -----------------------------------------------------------------------------
# the run

def main(argv):
    if any(a in ('-h', '--help') for a in argv):  # after config files: the values they set
        print(usage(__doc__, DEFAULTS, [__file__, os.path.join(ROOT, 'model.py')],
                    [a for a in argv if a not in ('-h', '--help')]))
        return
    c = SimpleNamespace(**load_config(DEFAULTS, argv))
    # one run writes an out_dir at a time (the processes of one torchrun are one run: rank 0 holds it)
    with output_lock(c.out_dir) if os.environ.get('RANK', '0') == '0' else nullcontext():
        train(c)


def train(c):
    check_config(c)

    # -------------------------------------------------------------------------
    # processes: one per device under torchrun, each running its share of the global micro-steps
    dev, device_type, dtype = dtype_and_device(c)
    ddp = 'RANK' in os.environ
    rank, world = 0, 1
    if ddp:
        dist.init_process_group(backend='nccl' if device_type == 'cuda' else 'gloo')
        rank, world = dist.get_rank(), dist.get_world_size()
        if device_type == 'cuda':
            dev = f"cuda:{os.environ['LOCAL_RANK']}"
            torch.cuda.set_device(dev)
    master = rank == 0
    if c.gradient_accumulation_steps % world:
        raise ValueError(f"gradient_accumulation_steps={c.gradient_accumulation_steps} must be a multiple of "
                         f"the {world} processes, so that every process runs the same number of micro-steps")
    local_steps = c.gradient_accumulation_steps // world
    tokens_per_iter = c.gradient_accumulation_steps * c.batch_size * c.block_size
    ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type, dtype=getattr(torch, dtype))
    torch.manual_seed(c.seed + rank)

    # -------------------------------------------------------------------------
    # data: the offsets of a step's global micro-batches come from one generator that every process
    # shares; every evaluation reads the same batches
    paths, meta = data_paths(c.dataset)
    sizes = {split: os.path.getsize(p) // 2 for split, p in paths.items()}
    for split, n in sizes.items():
        if n <= c.block_size:
            raise ValueError(f"{paths[split]} has {n} tokens, fewer than block_size + 1 = "
                             f"{c.block_size + 1}; use --block_size={n - 1} (or less), or more data")
    data_gen = torch.Generator().manual_seed(c.seed)
    eval_gen = torch.Generator().manual_seed(c.seed + 1)
    eval_offsets = {split: draw_offsets(eval_gen, n, c.block_size, (c.eval_iters, c.batch_size))
                    for split, n in sizes.items()}

    # -------------------------------------------------------------------------
    # model
    model, ckpt, vocab = build_model(c, meta)
    model_args = asdict(model.config)
    model.to(dev)
    if c.freeze_pos_emb:
        model.transformer.wpe.weight.requires_grad_(False)
    if c.inrank and c.init_from != 'resume':  # a resumed run keeps the ranks of its checkpoint
        inrank_start(model, c.inrank_init_modes, c.inrank_buffer_modes)

    # -------------------------------------------------------------------------
    # the loss of one micro-batch: the model's own, or DistilGPT2's against a frozen teacher
    # built before a resumed run restores the RNG: the teacher's init draws from it
    if c.kd_teacher:
        teacher = load_teacher(c, model_args, dev)

        def micro_loss(x, y):
            logits, loss, h = model(x, y, return_hidden=True)
            with torch.no_grad():
                t_logits, _, t_h = teacher(x, return_hidden=True)
            return distill_loss(loss, (logits, h), (t_logits, t_h), c.kd_temperature, c.kd_alpha_ce,
                                c.kd_alpha_clm, c.kd_alpha_cos)
    else:
        def micro_loss(x, y):
            return model(x, y)[1]

    # -------------------------------------------------------------------------
    # optimizer, and the state of a resumed run
    optimizer = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), device_type)
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')
    iter_num, best_val_loss, resumed_at = 0, float('inf'), None
    inrank = None
    if c.inrank:
        if ckpt is not None and 'inrank_count' not in ckpt:
            raise ValueError(f"--inrank=True but {c.out_dir}/ckpt.pt holds no InRank count (its run had "
                             f"inrank off); InRank resumes only an InRank run")
        inrank = InRankSchedule(c.inrank_unit, c.inrank_warmup_iter, c.inrank_gap_iter,
                                ckpt['inrank_count'] if ckpt is not None else 0)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt['optimizer'])
        scaler.load_state_dict(ckpt['scaler'])
        iter_num, best_val_loss = ckpt['iter_num'], ckpt['best_val_loss']
        resumed_at = None if ckpt.get('eval_pending') else iter_num  # a stopped evaluation is redone
        data_gen.set_state(ckpt['data_rng'])
        if len(ckpt['rng']) == world:  # a different process count cannot continue the same dropout streams
            set_rng_state(ckpt['rng'][rank])
    raw_model = model
    if c.compile:
        model = torch.compile(model)
    if ddp:
        model = DDP(model, device_ids=[dev] if device_type == 'cuda' else None)

    # -------------------------------------------------------------------------
    # the loop, which every process runs in lockstep: evaluations and saves are collective

    def inrank_hook(event):
        """InRank's schedule counts `event` ('forward': before each forward of the model, outside
        autocast; 'step': after each optimizer step) and checks the ranks when due."""
        if inrank is None or not inrank.advance(event):
            return
        changes = inrank_check(raw_model, c.inrank_threshold, c.inrank_buffer_modes)
        if master and changes:
            count = f"forward {inrank.count} | " if event == 'forward' else ''
            print(f"inrank {iter_num} | {count}" + ', '.join(f"{n.removeprefix('transformer.')} {a}->{b}"
                                                           for n, a, b in changes), flush=True)

    def save(name, eval_pending=False):
        rngs, sums = process_states(raw_model, iter_num, name)
        if master:
            save_checkpoint({'model': raw_model.state_dict(), 'optimizer': optimizer.state_dict(),
                             'scaler': scaler.state_dict(), 'model_args': model_args, 'config': vars(c),
                             'iter_num': iter_num, 'best_val_loss': best_val_loss, 'rng': rngs,
                             'weight_sums': sums, 'data_rng': data_gen.get_state(), 'vocab': vocab,
                             'eval_pending': eval_pending,
                             **({'inrank_count': inrank.count} if inrank else {})},
                            os.path.join(c.out_dir, name))

    signalled = False

    def on_signal(signum, frame):  # the step under way (or one evaluation batch) ends, then a save
        nonlocal signalled
        signalled = True
        signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C kills at once

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if master:
            print_header(c, raw_model, dev, world, dtype, tokens_per_iter)
            if c.wandb_log:
                import wandb
                wandb.init(project=c.wandb_project, name=c.wandb_run_name, config=vars(c))
        # the eta: recent steps, and evaluations where they happen; a run's first step and first
        # evaluation pay one-time costs (allocation, compiling, reading texts) and are left out
        first_iter, step_times, eval_times, ppl_texts = iter_num, deque(maxlen=ETA_WINDOW), [], {}
        eval_steps = 2 * c.eval_iters / (3 * c.gradient_accumulation_steps)  # forwards vs forward + backward
        while True:
            if (iter_num % c.eval_interval == 0 or iter_num >= c.max_iters) and iter_num != resumed_at:
                t0 = time.time()
                inrank_count = inrank.count if inrank else 0  # restored if stopped: resume redoes it
                model.eval()
                # not through DDP, which broadcasts the buffers (a low-rank model's active ranks) at every
                # forward: a process with fewer batches than another would leave that one waiting
                losses = evaluate(model.module if ddp else model, paths, eval_offsets, c.block_size, dev, ctx,
                                  iter_num, stop=lambda: any_process(signalled, dev),
                                  on_forward=lambda: inrank_hook('forward'), progress=master)
                model.train()
                if losses is None:
                    if inrank:
                        inrank.count = inrank_count
                    save('ckpt.pt', eval_pending=True)
                    if master:
                        print(f"stopped by a signal during the evaluation at iteration {iter_num}; saved "
                              f"{c.out_dir}/ckpt.pt, continue with --init_from=resume")
                    break
                if not math.isfinite(losses['val']):
                    raise ValueError(f"non-finite val loss at iteration {iter_num}; "
                                     f"the last checkpoint is kept")
                ppl = (benchmark_ppl(raw_model, c.eval_ppl, vocab, ctx, dev, ppl_texts)
                       if c.eval_ppl and master and not signalled else {})
                if master:
                    print(f"eval {iter_num} | train {losses['train']:.4f} | val {losses['val']:.4f}"
                          + ''.join(f" | {k} ppl {v:.2f}" for k, v in ppl.items()), flush=True)
                    if c.wandb_log:
                        wandb.log({'iter': iter_num, 'train/loss': losses['train'], 'val/loss': losses['val'],
                                   **{f'ppl/{k}': v for k, v in ppl.items()}})
                if losses['val'] < best_val_loss:
                    best_val_loss = losses['val']
                    save('best.pt')
                save('ckpt.pt')
                eval_times.append(time.time() - t0)
            if iter_num >= c.max_iters:
                if master:
                    print(f"done: {iter_num} iterations; checkpoints in {c.out_dir}: ckpt.pt (the last), "
                          f"best.pt (val loss {best_val_loss:.4f})")
                break

            # one optimizer step; rank r takes its consecutive share of the step's global micro-batches
            t0 = time.time()
            lr = get_lr(iter_num, c)
            for group in optimizer.param_groups:
                group['lr'] = lr
            offsets = draw_offsets(data_gen, sizes['train'], c.block_size,
                                   (c.gradient_accumulation_steps, c.batch_size))
            loss_sum = torch.zeros((), device=dev)
            for micro in range(local_steps):
                inrank_hook('forward')
                x, y = get_batch(paths['train'], offsets[rank * local_steps + micro], c.block_size, dev)
                if ddp:  # all-reduce the gradients once, on the last micro-step
                    model.require_backward_grad_sync = micro == local_steps - 1
                with ctx:
                    loss = micro_loss(x, y)
                loss_sum += loss.detach().float()
                scaler.scale(loss / local_steps).backward()
            # one all-reduce gives the global mean loss and whether any process was asked to stop
            status = torch.stack([loss_sum / local_steps, torch.tensor(float(signalled), device=dev)])
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
            inrank_hook('step')  # between optimizer steps, where methods that change the model hook in
            dt = time.time() - t0
            if iter_num > first_iter:
                step_times.append(dt)

            if master and (iter_num % c.log_interval == 0 or stopping):
                left = eta_seconds(step_times, c.max_iters - iter_num - 1, evals_after(iter_num, c.max_iters,
                                   c.eval_interval), eval_times[1:], eval_steps)
                mfu = (f"{100 * raw_model.estimate_mfu(tokens_per_iter // world, dt):.1f}%"
                       if device_type == 'cuda' else '-')
                print(f"iter {iter_num} | loss {step_loss:.4f} | lr {lr:.3e} | {1000 * dt:.1f} ms/iter | "
                      f"{tokens_per_iter / dt:,.0f} tok/s | mfu {mfu} | "
                      f"eta {'after the first steps' if left is None else eta(left)}", flush=True)
            iter_num += 1
            if stopping:
                save('ckpt.pt')
                if master:
                    print(f"stopped by a signal after iteration {iter_num - 1}; saved {c.out_dir}/ckpt.pt, "
                          f"continue with --init_from=resume")
                break
        if ddp:
            dist.barrier()  # no process exits before rank 0 has written the last checkpoint
    finally:
        if ddp:
            # DDP holds the process group: release it first so that the group is torn down here. Left to
            # the interpreter's exit, gloo's teardown aborted a process now and then after a finished run
            model = None
            gc.collect()
            dist.destroy_process_group()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


if __name__ == '__main__':
    errors.run(main, sys.argv[1:])
