"""
Everything the project has not yet run on a GPU, checked in one command that fits a short GPU slot.

    python script/gpu_check.py                        # CUDA, GPT-2 small shapes: about 5 min on one GPU
    python script/gpu_check.py --device cpu           # dry run: tiny stand-in shapes, 1-2 min on 2 cores
    python script/gpu_check.py --out DIR --checks kron,paths

Checks (each passes or fails, except `paths`, a measurement):
  kron   every KronLinear path (dense, a_first, b_first) with each of its four feature orders, and
         the MLP (both layers on one path, and as the cost model chooses, with its permuted hidden
         layer), for the five paper shapes, in fp32 and under bf16 autocast on the device, against
         a float64 CPU reference (factored.kron_reference, built with torch.kron): the output and
         every gradient within TOL (relative Frobenius error)
  paths  each paper shape's MLP with every pair of paths pinned, forward + backward on a
         training-sized batch and forward alone on an evaluation-sized one, fp32 and bf16: the
         time of each pair, the pair the cost model picks, how much slower it is than the fastest,
         and the kron_fast.MOVE_MACS value for this device kind that would have picked best
  bench  script/bench.py --dtype bf16 and --dtype fp32 (mlp, train, eval, memory tables) as
         subprocesses; on CUDA the memory table is torch.cuda.max_memory_allocated
  train  train.py through `torchrun --nproc_per_node=1`, a small Kronecker model on a character
         slice of tinyshakespeare, dtype=bfloat16: the validation loss falls (by 5% or more from
         the untrained model's); compile=True logs the same losses as eager within COMPILE_TOL; a
         run stopped halfway and resumed from its checkpoint logs the same losses as the
         uninterrupted one within RESUME_TOL
  ppl    a small Kronecker GPT exported with krony_to_gpt.py: perplexity_eval.py on the device
         equals the CPU figure within PPL_TOL relative, and so does the checkpoint itself

--device cpu runs every check on tiny shapes (bench.py --quick): it shows the script works before a
GPU is lent; its figures mean nothing. Output in --out (default out/gpu_check): results.json
(every number), summary.md, log.txt (the subprocesses' output), bench_bf16.json, bench_fp32.json.
The exit status is 1 if any check failed.
"""
import argparse
import itertools
import json
import math
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch
from torch.nn import functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'script'))
import errors  # noqa: E402
import kron_fast  # noqa: E402
from outputs import check_destination, output_lock  # noqa: E402
from bench import (GPT2_SMALL, QUICK, QUICK_SHAPES, SHAPES, autocast, interleaved, kron_paths,  # noqa: E402
                   model_config)
from checkpoint import save_checkpoint  # noqa: E402
from factored import KronLinear, kron_reference, kron_shapes  # noqa: E402
from kron_fast import KRON_PATHS  # noqa: E402
from model import GPT, GPTConfig, MLP  # noqa: E402

CHECKS = ('kron', 'paths', 'bench', 'train', 'ppl')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
# relative Frobenius error of outputs and gradients against float64 (regular, and for tensors of
# at most SMALL elements): fp32 (TF32 off) rounds each product at ~1e-7; bf16 keeps 8 bits (~3e-3
# seen on outputs and most gradients). The gradient of a B of 1x2 or a scalar is a sum of millions of
# products that mostly cancel, so its relative error is larger (up to 0.08 seen on random layers);
# a feature order or transpose gone wrong is off by about 100%.
TOL = {'fp32': (1e-4, 1e-3), 'bf16': (0.03, 0.15)}
SMALL = 16
# train.py with dtype=bfloat16: compiled kernels fuse and round in other places than eager ones
COMPILE_TOL = 0.02
# resume: bitwise on CPU (as tests/test_train.py shows); on CUDA atomics in the embedding gradient
# may change the last bits of a step
RESUME_TOL = {'cpu': 0.0, 'cuda': 2e-3}
PPL_TOL = 1e-3
MOVE_MACS_CANDIDATES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# sizes: GPT-2 small on a GPU; tiny stand-ins for the CPU dry run
FULL = dict(base=GPT2_SMALL, shapes=SHAPES, check_tokens=256, train_tokens=12 * 1024, eval_tokens=1024,
            rounds=5, bench=['--tables', 'mlp,train,eval,memory'], chars=200_000,
            train=dict(n_layer=2, n_head=4, n_embd=128, block_size=128, batch_size=16,
                       gradient_accumulation_steps=1, kron_dim1=32, kron_dim2=64, max_iters=40,
                       learning_rate=3e-3))
# the dry run leaves out bench.py's memory table (a fresh process per model; tests/test_bench.py runs it)
DRY = dict(base=QUICK, shapes=QUICK_SHAPES, check_tokens=32, train_tokens=256, eval_tokens=64,
           rounds=2, bench=['--tables', 'mlp,train,eval', '--quick', '--repeats', '1'], chars=60_000,
           train=dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4,
                      gradient_accumulation_steps=2, kron_dim1=8, kron_dim2=16, max_iters=12,
                      learning_rate=3e-3))
PPL_MODEL = dict(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=50257, mlp='kron',
                 kron_dim1=16, kron_dim2=32)


def rel_err(a, ref):
    return ((a.detach().double().cpu() - ref).norm() / ref.norm()).item()


# -----------------------------------------------------------------------------
# kron: correctness of every path on the device

def permuted_order(n_a, n_b):
    """Index map from the permuted feature order (i2, i1) to kron's (i1, i2)."""
    return torch.arange(n_a * n_b).view(n_a, n_b).t().reshape(-1)


def kron_matrix(p, prefix=''):
    """sum_f s_f kron(A_f, B_f) from a layer's parameters by name: the (in, out) matrix it stands for."""
    return kron_reference(p[prefix + 'A'], p[prefix + 'B'], p.get(prefix + 'scale'))


def randomize(module, gen):
    """Draw every parameter of a float64 module (biases and scalars too, so all get gradients), each
    a float32 number, so that the device's float32 copy holds exactly the reference's values."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((torch.randn(p.shape, generator=gen) * (0.5 if p.ndim == 1 else 0.1)).double())
    return module


def reference(module, ref_fn, x, g):
    """(output, gradients wrt x and every parameter) of ref_fn({name: parameter}, x) on float64
    copies of module's parameters on the CPU, with upstream gradient g."""
    names = [n for n, _ in module.named_parameters()]
    xd = x.detach().clone().requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    ref = ref_fn(dict(zip(names, params)), xd)
    return ref.detach(), torch.autograd.grad((ref * g).sum(), [xd, *params])


def errors_vs_reference(module, ref, x, g, device, dt, **kw):
    """({name: relative error}, passed) of module's output and gradients (input, then parameters)
    computed on device under dtype dt, against reference()'s."""
    names = ['y', 'x'] + [n for n, _ in module.named_parameters()]
    dev = module.to(device=device, dtype=torch.float32)
    xv = x.detach().to(device, torch.float32).requires_grad_()
    with autocast(device, DTYPES[dt]):
        y = dev(xv, **kw)
    grads = torch.autograd.grad((y.float() * g.to(device, torch.float32)).sum(), [xv, *dev.parameters()])
    module.to(device='cpu', dtype=torch.float64)
    errs = dict(zip(names, [rel_err(a, b) for a, b in zip((y, *grads), (ref[0], *ref[1]))]))
    small = {n for n, p in module.named_parameters() if p.numel() <= SMALL}
    tol, tol_small = TOL[dt]
    return errs, all(e <= (tol_small if n in small else tol) for n, e in errs.items())


def check_kron(sizes, device):
    base, shapes = sizes['base'], sizes['shapes']
    n, N = base['n_embd'], sizes['check_tokens']
    gen = torch.Generator().manual_seed(0)
    rows = []
    for label, d1, d2, f in shapes:
        cfg = model_config(base, shapes, label)
        (a_fc, _), (a_proj, _) = kron_shapes(cfg)
        for which, (in_f, out_f, a_shape) in (('c_fc', (n, 4 * n, a_fc)), ('c_proj', (4 * n, n, a_proj))):
            lin = randomize(KronLinear(in_f, out_f, a_shape, f, scalers=f > 1).double(), gen)
            (m1, n1), m2, n2 = a_shape, in_f // a_shape[0], out_f // a_shape[1]
            x = torch.randn(N, in_f, generator=gen, dtype=torch.float64)
            g = torch.randn(N, out_f, generator=gen, dtype=torch.float64)
            for pin, pout in itertools.product((False, True), repeat=2):
                r = permuted_order(m1, m2) if pin else torch.arange(in_f)
                c = permuted_order(n1, n2) if pout else torch.arange(out_f)
                ref = reference(lin, lambda p, x: x @ kron_matrix(p)[r][:, c] + p['bias'][c], x, g)
                for path in KRON_PATHS:
                    lin.pinned_path = path
                    for dt in DTYPES:
                        errs, passed = errors_vs_reference(lin, ref, x, g, device, dt,
                                                           permuted_in=pin, permuted_out=pout)
                        rows.append(dict(shape=label, layer=which, path=path, permuted_in=pin, permuted_out=pout,
                                         dtype=dt, errors=errs, passed=passed))
        rows += check_mlp(cfg, label, N, gen, device)
    return rows


def check_mlp(cfg, label, N, gen, device):
    """The MLP as model.py runs it (the hidden layer handed over in the permuted order), each path
    pinned on both layers and as the cost model chooses, against GELU(x W_fc + b) W_proj + b."""
    mlp = randomize(MLP(cfg).double(), gen)
    x = torch.randn(N, cfg.n_embd, generator=gen, dtype=torch.float64)
    g = torch.randn(N, cfg.n_embd, generator=gen, dtype=torch.float64)

    def ref_fn(p, x):
        h = F.gelu(x @ kron_matrix(p, 'c_fc.') + p['c_fc.bias'], approximate='tanh')
        return h @ kron_matrix(p, 'c_proj.') + p['c_proj.bias']

    ref = reference(mlp, ref_fn, x, g)
    rows = []
    for path in (*KRON_PATHS, None):
        mlp.c_fc.pinned_path = mlp.c_proj.pinned_path = path
        paths = kron_paths(mlp, N)
        for dt in DTYPES:
            errs, passed = errors_vs_reference(mlp, ref, x, g, device, dt)
            rows.append(dict(shape=label, layer='mlp', path=paths if path else f"chosen: {paths}",
                             permuted_in=None, permuted_out=None, dtype=dt, errors=errs, passed=passed))
    return rows


# -----------------------------------------------------------------------------
# paths: every pair of paths timed, against the cost model's pick

PAIRS = list(itertools.product(KRON_PATHS, repeat=2))


def time_pairs(mlp, n_tokens, train, dtype, rounds, device):
    """{pair: [seconds per round]} of the MLP with c_fc and c_proj pinned to each pair of paths:
    forward + backward (train) or a no-grad forward, interleaved as bench.py does."""
    x = torch.randn(n_tokens, mlp.c_fc.in_features, device=device, requires_grad=train)
    g = torch.randn(n_tokens, mlp.c_fc.in_features, device=device)
    ctx = autocast(device, dtype)

    def step_fn(pair):
        def step():
            mlp.c_fc.pinned_path, mlp.c_proj.pinned_path = pair
            if train:
                for p in mlp.parameters():
                    p.grad = None
                with ctx:
                    y = mlp(x)
                y.backward(g.to(y.dtype))
            else:
                with torch.no_grad(), ctx:
                    mlp(x)
        return step

    t = interleaved({pair: step_fn(pair) for pair in PAIRS}, rounds, device)
    mlp.c_fc.pinned_path = mlp.c_proj.pinned_path = None
    return t


def check_paths(sizes, device):
    """(rows, suggestion): per shape, dtype and batch, every pair's median time, the cost model's
    pick and its time over the fastest; and the MOVE_MACS value for this device kind under which
    the picks come closest to the fastest pairs (geometric mean over the rows)."""
    base, shapes = sizes['base'], sizes['shapes']
    rows, mlps = [], {}
    for label, *_ in shapes:
        torch.manual_seed(0)
        mlps[label] = mlp = MLP(model_config(base, shapes, label)).to(device)
        for dt in DTYPES:
            for mode, n_tokens in (('train', sizes['train_tokens']), ('eval', sizes['eval_tokens'])):
                t = time_pairs(mlp, n_tokens, mode == 'train', DTYPES[dt], sizes['rounds'], device)
                med = {'/'.join(p): 1e3 * statistics.median(v) for p, v in t.items()}
                pick = kron_paths(mlp, n_tokens)
                fastest = min(med, key=med.get)
                rows.append(dict(shape=label, dtype=dt, mode=mode, tokens=n_tokens, ms=med, pick=pick,
                                 fastest=fastest, pick_vs_fastest=med[pick] / med[fastest]))
    kind = device.type
    current = kron_fast.MOVE_MACS.get(kind, kron_fast.MOVE_MACS['cpu'])
    scores = {}
    try:
        for v in MOVE_MACS_CANDIDATES:
            kron_fast.MOVE_MACS[kind] = v
            slow = [r['ms'][kron_paths(mlps[r['shape']], r['tokens'])] / r['ms'][r['fastest']]
                    for r in rows]
            scores[v] = math.exp(statistics.fmean(math.log(s) for s in slow))
    finally:
        kron_fast.MOVE_MACS[kind] = current
    # the lowest score; among equal ones the value nearest the current one, so that the choice only
    # moves when a measurement asks for it
    best = min(scores, key=lambda v: (round(scores[v], 3), abs(math.log2(v + 1) - math.log2(current + 1))))
    suggestion = dict(device_kind=kind, current=current, current_score=scores.get(current),
                      suggested=best, suggested_score=scores[best], scores=scores)
    return rows, suggestion


# -----------------------------------------------------------------------------
# the scripts, run as a user runs them

def run(cmd, log, env=None):
    """Run cmd in the repository, append its output to log; (exit status, stdout)."""
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    with open(log, 'a') as f:
        f.write(f"\n$ {' '.join(cmd)}\n# exit {r.returncode} after {time.time() - t0:.1f} s\n{r.stdout}{r.stderr}")
    return r.returncode, r.stdout


def check_bench(sizes, device, out, log):
    rows = []
    for dt in ('bf16', 'fp32'):
        path = os.path.join(out, f'bench_{dt}.json')
        rc, stdout = run([sys.executable, 'script/bench.py', '--device', device.type, '--dtype', dt,
                          '--json', path, *sizes['bench']], log)
        asked = sizes['bench'][sizes['bench'].index('--tables') + 1].split(',')
        tables = []
        if rc == 0:
            with open(path) as f:
                written = json.load(f)
            tables = [t for t in asked if written.get(t)]
        rows.append(dict(dtype=dt, exit=rc, tables=tables, passed=rc == 0 and tables == asked, stdout=stdout))
    return rows


def char_dataset(path, n_chars):
    """train.bin / val.bin / meta.pkl of the first n_chars of the shipped tinyshakespeare, 90/10."""
    with open(os.path.join(ROOT, 'data', 'texts', 'tinyshakespeare', 'input.txt')) as f:
        text = f.read()[:n_chars]
    chars = sorted(set(text))
    ids = np.array([chars.index(ch) for ch in text], dtype=np.uint16)
    os.makedirs(path, exist_ok=True)
    ids[:9 * len(ids) // 10].tofile(os.path.join(path, 'train.bin'))
    ids[9 * len(ids) // 10:].tofile(os.path.join(path, 'val.bin'))
    with open(os.path.join(path, 'meta.pkl'), 'wb') as f:
        pickle.dump({'vocab_size': len(chars)}, f)


def parse_log(stdout):
    """({iteration: step loss}, {iteration: val loss}) of train.py's output."""
    steps = {int(i): float(v) for i, v in re.findall(r'^iter (\d+) \| loss (\S+) ', stdout, re.M)}
    evals = {int(i): float(v) for i, v in re.findall(r'^eval (\d+) \| train \S+ \| val (\S+)', stdout, re.M)}
    return steps, evals


def max_rel_diff(a, b):
    """Largest relative difference over the iterations both logs hold (inf if they share none)."""
    common = sorted(set(a) & set(b))
    return max((abs(a[i] - b[i]) / abs(b[i]) for i in common), default=math.inf)


def check_train(sizes, device, work, log):
    data = os.path.join(work, 'chars')
    char_dataset(data, sizes['chars'])
    t = sizes['train']
    iters, half = t['max_iters'], t['max_iters'] // 2
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1', 'train.py']
    common = [f'--dataset={data}', f'--device={device.type}', '--dtype=bfloat16', '--mlp=kron', '--eval_iters=4',
              '--log_interval=1', f'--eval_interval={half}', f'--warmup_iters={max(1, iters // 10)}',
              f'--lr_decay_iters={iters}', *(f'--{k}={v}' for k, v in t.items() if k != 'max_iters')]
    out = lambda name: f'--out_dir={os.path.join(work, name)}'  # noqa: E731
    runs = {}
    for name, extra in (('eager', [f'--max_iters={iters}']), ('compiled', [f'--max_iters={iters}', '--compile=True']),
                        ('first_half', [f'--max_iters={half}'])):
        runs[name] = run(torchrun + common + [out('resumed' if name == 'first_half' else name)] + extra, log)
    runs['resumed'] = run(torchrun + common + [out('resumed'), f'--max_iters={iters}', '--init_from=resume'], log)
    exits = {name: rc for name, (rc, _) in runs.items()}
    logs = {name: parse_log(stdout) for name, (_, stdout) in runs.items()}
    eager_steps, eager_evals = logs['eager']
    resumed_steps = logs['resumed'][0]
    first, last = eager_evals.get(0, math.nan), eager_evals.get(iters, math.nan)
    compile_diff = max_rel_diff(logs['compiled'][0], eager_steps)
    resume_diff = max_rel_diff(resumed_steps, eager_steps)
    checks = {
        'all runs exit 0': all(rc == 0 for rc in exits.values()),
        'val loss falls by 5% or more': last < 0.95 * first,
        f'compiled step losses within {COMPILE_TOL} of eager': compile_diff <= COMPILE_TOL,
        'resumed run logs iterations half..end': sorted(resumed_steps) == list(range(half, iters)),
        f'resumed step losses within {RESUME_TOL[device.type]} of uninterrupted':
            resume_diff <= RESUME_TOL[device.type],
    }
    return dict(exits=exits, val_loss_first=first, val_loss_last=last, compile_max_rel_diff=compile_diff,
                resume_max_rel_diff=resume_diff, step_losses={k: v[0] for k, v in logs.items()},
                checks=checks, passed=all(checks.values()))


def check_ppl(device, work, log):
    """Export a small Kronecker GPT with krony_to_gpt.py; perplexity_eval.py of the export on the
    device, of the export on the CPU and of the checkpoint on the device (on a CPU the first two are
    one run)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**PPL_MODEL))
    ckpt, export = os.path.join(work, 'kron.pt'), os.path.join(work, 'export')
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, ckpt)
    text = os.path.join(work, 'text.txt')
    with open(os.path.join(ROOT, 'data', 'texts', 'tinyshakespeare', 'input.txt')) as f:
        src = f.read()
    with open(text, 'w') as f:
        f.write(src[:4000])
    exits = {'export': run([sys.executable, 'krony_to_gpt.py', ckpt, export], log)[0]}
    ppl = {}
    runs = [('export_cpu', export, 'cpu'), ('checkpoint_device', ckpt, device.type)]
    if device.type != 'cpu':
        runs.insert(0, ('export_device', export, device.type))
    for name, model_path, dev in runs:
        js = os.path.join(work, f'{name}.json')
        exits[name] = run([sys.executable, 'perplexity_eval.py', model_path, '--text_file', text,
                           '--device', dev, '--json', js], log)[0]
        if exits[name] == 0:
            with open(js) as f:
                ppl[name] = json.load(f)['results']['text.txt']['ppl']
    cpu = ppl.get('export_cpu', math.nan)
    diffs = {k: abs(v / cpu - 1) for k, v in ppl.items() if k != 'export_cpu'}
    passed = (all(rc == 0 for rc in exits.values()) and len(diffs) == len(runs) - 1
              and all(d <= PPL_TOL for d in diffs.values()))
    return dict(exits=exits, ppl=ppl, rel_diff_vs_cpu=diffs, passed=passed)


# -----------------------------------------------------------------------------
# the summary

def md_table(header, rows):
    return '\n'.join(['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
                     + ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows])


def summary(res):
    out = [f"# gpu_check: {res['device']} ({res['device_name']}), torch {res['torch']}",
           '', f"command: `{res['command']}`; {'PASSED' if res['passed'] else 'FAILED'} "
           f"({', '.join(f'{k} {v}' for k, v in res['status'].items())}); {res['seconds']:.0f} s", '']
    if res['dry_run']:
        out += ['Dry run on tiny stand-in shapes: the figures below only show that the checks run.', '']
    if 'kron' in res:
        rows = res['kron']
        worst = {}
        for r in rows:
            key = (r['layer'] == 'mlp', r['dtype'])
            e = max(r['errors'].values())
            worst[key] = max(worst.get(key, 0.0), e)
        out += ['## kron: paths and MLP against float64 (relative Frobenius error, output and gradients)', '',
                f"{sum(r['passed'] for r in rows)} of {len(rows)} passed; tolerances {TOL} "
                f"(regular, tensors of at most {SMALL} elements)", '',
                md_table(['what', 'dtype', 'largest error'],
                         [('layer' if not m else 'MLP', dt, f"{e:.2e}") for (m, dt), e in sorted(worst.items())])]
        failed = [r for r in rows if not r['passed']]
        if failed:
            out += ['', 'failed:', '', md_table(
                ['shape', 'layer', 'path', 'permuted in/out', 'dtype', 'errors'],
                [(r['shape'], r['layer'], r['path'], f"{r['permuted_in']}/{r['permuted_out']}", r['dtype'],
                  ', '.join(f"{k} {v:.1e}" for k, v in r['errors'].items())) for r in failed])]
        out.append('')
    if 'paths' in res:
        rows, s = res['paths']['rows'], res['paths']['move_macs']
        out += ['## paths: MLP time (ms) of every c_fc/c_proj pair, the cost model\'s pick against the fastest', '',
                md_table(['shape', 'dtype', 'batch', 'tokens', 'pick', 'pick ms', 'fastest', 'fastest ms',
                          'pick / fastest'],
                         [(r['shape'], r['dtype'], r['mode'], r['tokens'], r['pick'], f"{r['ms'][r['pick']]:.2f}",
                           r['fastest'], f"{r['ms'][r['fastest']]:.2f}", f"{r['pick_vs_fastest']:.2f}x")
                          for r in rows]), '',
                f"MOVE_MACS['{s['device_kind']}'] = {s['current']}: picks {s['current_score']:.3f}x the fastest "
                f"(geometric mean); the best candidate is {s['suggested']} at {s['suggested_score']:.3f}x.", '',
                md_table(['MOVE_MACS', *map(str, s['scores'])],
                         [('pick / fastest', *(f"{v:.3f}" for v in s['scores'].values()))]), '']
    if 'bench' in res:
        out += ['## bench: script/bench.py', '']
        for r in res['bench']:
            out += [f"### --dtype {r['dtype']}: exit {r['exit']}, tables {', '.join(r['tables']) or 'none'}", '',
                    r['stdout'].strip(), '']
    if 'train' in res:
        t = res['train']
        out += ['## train: train.py through torchrun --nproc_per_node=1, dtype=bfloat16', '',
                f"val loss {t['val_loss_first']:.4f} -> {t['val_loss_last']:.4f}; compiled vs eager step losses: "
                f"largest relative difference {t['compile_max_rel_diff']:.2e}; resumed vs uninterrupted: "
                f"{t['resume_max_rel_diff']:.2e}; exits {t['exits']}", '',
                md_table(['check', 'passed'], list(t['checks'].items())), '']
    if 'ppl' in res:
        p = res['ppl']
        out += ['## ppl: perplexity_eval.py of a krony_to_gpt.py export', '',
                md_table(['run', 'perplexity', 'relative difference vs the export on CPU'],
                         [(k, f"{v:.4f}", f"{p['rel_diff_vs_cpu'][k]:.1e}" if k in p['rel_diff_vs_cpu'] else '-')
                          for k, v in p['ppl'].items()]), f"\nexits {p['exits']}; tolerance {PPL_TOL}", '']
    for name, err in res.get('errors', {}).items():
        out += [f"## {name}: raised", '', '```', err, '```', '']
    return '\n'.join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda', help='cuda (the check) or cpu (a dry run on tiny shapes)')
    p.add_argument('--out', default=os.path.join(ROOT, 'out', 'gpu_check'), help='folder for every result')
    p.add_argument('--checks', default=','.join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}")
    args = p.parse_args(argv)
    args.checks = [c for c in args.checks.split(',') if c]
    unknown = set(args.checks) - set(CHECKS)
    if unknown or not args.checks:
        raise ValueError(f"unknown checks {sorted(unknown)}; choose from {','.join(CHECKS)}")
    try:
        args.device = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"--device {args.device!r} is not a torch device (cuda or cpu)") from None
    if args.device.type not in ('cpu', 'cuda'):
        raise ValueError(f"--device {args.device} : gpu_check runs on cuda, or on cpu as a dry run")
    if args.device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no CUDA GPU; --device cpu runs the dry run")
    check_destination(args.out, kind='dir')
    return args


def main(argv=None):
    """Run the checks; returns the exit status (1 if any check failed or raised)."""
    args = parse_args(argv)
    with output_lock(args.out):
        return check(args, argv)


def check(args, argv):
    device, dry = args.device, args.device.type == 'cpu'
    sizes = DRY if dry else FULL
    if dry:
        torch.set_num_threads(1)  # tiny ops on two threads stall on each other on a busy machine
    else:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as in bench.py
    os.makedirs(args.out, exist_ok=True)
    log = os.path.join(args.out, 'log.txt')
    open(log, 'w').close()
    res = dict(command=' '.join(['python script/gpu_check.py', *(argv if argv is not None else sys.argv[1:])]),
               device=str(device), dry_run=dry, torch=torch.__version__,
               device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU',
               tolerances=dict(tol=TOL, small=SMALL, compile=COMPILE_TOL, resume=RESUME_TOL, ppl=PPL_TOL),
               seconds_per_check={}, status={}, errors={})
    t_start = time.time()
    with tempfile.TemporaryDirectory() as work:
        for name in args.checks:
            t0 = time.time()
            print(f"gpu_check: {name} ...", flush=True)
            try:
                if name == 'kron':
                    res['kron'] = check_kron(sizes, device)
                    ok = all(r['passed'] for r in res['kron'])
                elif name == 'paths':
                    rows, suggestion = check_paths(sizes, device)
                    res['paths'] = dict(rows=rows, move_macs=suggestion)
                    ok = None  # a measurement
                elif name == 'bench':
                    res['bench'] = check_bench(sizes, device, args.out, log)
                    ok = all(r['passed'] for r in res['bench'])
                elif name == 'train':
                    res['train'] = check_train(sizes, device, work, log)
                    ok = res['train']['passed']
                else:
                    res['ppl'] = check_ppl(device, work, log)
                    ok = res['ppl']['passed']
            except Exception as e:  # one broken check must not cost the others their slot
                import traceback
                res['errors'][name] = traceback.format_exc()
                ok = False
                print(f"gpu_check: {name} raised {type(e).__name__}: {e}", flush=True)
            res['status'][name] = 'measured' if ok is None else ('passed' if ok else 'FAILED')
            res['seconds_per_check'][name] = round(time.time() - t0, 1)
            print(f"gpu_check: {name} {res['status'][name]} in {time.time() - t0:.0f} s", flush=True)
    res['seconds'] = time.time() - t_start
    res['passed'] = all(s != 'FAILED' for s in res['status'].values())
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(res, f, indent=1, default=str)
    with open(os.path.join(args.out, 'summary.md'), 'w') as f:
        f.write(summary(res) + '\n')
    print(f"gpu_check: {'passed' if res['passed'] else 'FAILED'}; wrote {args.out}/results.json and summary.md")
    return 0 if res['passed'] else 1


if __name__ == '__main__':
    sys.exit(errors.run(main))
