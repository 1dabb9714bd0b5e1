"""
Speed, memory, checkpoint size and decomposition time of Krony-PT against dense GPT-2, side by side.

    python script/bench.py                          # CPU, fp32, GPT-2 small shapes (~11 min on 2 cores)
    python script/bench.py --device cuda --dtype bf16
    python script/bench.py --tables mlp,train       # a subset of the tables
    python script/bench.py --tables mlp --keep-freed-memory   # CPU: without the allocator's page faults
    python script/bench.py --quick                  # tiny stand-in shapes, seconds (tests/test_bench.py)

Tables:
  mlp    one MLP (c_fc, GELU, c_proj, biases), forward + backward on --mlp_tokens tokens, for each
         Krony-PT shape: dense, "rebuild" (the paper's way: W = sum_f s_f kron(A_f, B_f) built with
         torch.kron in every forward, then one dense product; written below as the baseline) and
         model.py's factored layer (contraction order or dense fall-back from its cost model;
         "fused": c_fc, GELU and c_proj computed as one, see KronLinear.fuses_with)
  train  a whole training step (forward, backward, AdamW) of GPT-2 small shapes on --batch x --seq
  eval   the evaluation forward (one perplexity window of block_size tokens, loss included) and
         generation (model.generate, no KV cache) in tokens/s
  memory peak memory of a training step and of evaluation (CPU: peak RSS of a fresh process per
         model; CUDA: torch.cuda.max_memory_allocated), and the size of a torch.save'd checkpoint
  decode greedy decoding with the KV cache (model.generate), --decode_prompt tokens of prompt then
         --decode_tokens new ones, batch 1 and 8, factored 81M and 96M against dense, tokens/s of the
         whole call; beside it the weight bytes each decoding step reads (every weight once, the
         position table aside: the memory-bound limit of decoding) and the size on disk of
         krony_to_gpt.py's --factored export against the folded one

Timings are medians over --repeats rounds; every round runs each variant once in turn (in reverse
order every other round), after one warm-up each, and a ratio is the median over rounds of the ratio
of two runs made back to back (in the MLP table the dense MLP runs next to each shape), so load from
other processes falls on both sides alike: compare the ratios, not the absolute times. The JSON
keeps every round. The allocator is glibc's default, as train.py, perplexity_eval.py and sample.py
run; --keep-freed-memory measures as if the process kept freed memory instead of returning it
(glibc mallopt, the CPU analogue of PyTorch's CUDA caching allocator), where page faults on large
fresh tensors no longer slow the memory-bound ops.
"""
import argparse
import contextlib
import ctypes
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict

import torch
from torch.nn import functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import errors  # noqa: E402
from checkpoint import save_checkpoint  # noqa: E402
from outputs import atomic_write, check_destination, output_lock  # noqa: E402
from factored import KronLinear, MatrixKind, kron_reference, kron_shapes  # noqa: E402
from kron_fast import kron_costs  # noqa: E402
from model import GPT, GPTConfig, MLP  # noqa: E402

# (label, dim_1, dim_2, factors): the Krony-PT models of docs/reference.md on GPT-2 small
SHAPES = [('81M', 768, 768, 1), ('96M', 384, 3072, 1), ('80M-2', 256, 1024, 2),
          ('92M-4', 256, 1024, 4), ('67M', 32, 64, 1)]
GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257)
# --quick: the same factor structure (B of 1x4, 2x1, 3x3, 24x48) on a 48-wide, 2-layer model
QUICK_SHAPES = [('81M', 48, 48, 1), ('96M', 24, 192, 1), ('80M-2', 16, 64, 2),
                ('92M-4', 16, 64, 4), ('67M', 2, 4, 1)]
QUICK = dict(n_layer=2, n_head=4, n_embd=48, block_size=64, vocab_size=256)
# models of the train / eval / memory tables: (label, shape label or None for dense, rebuild)
MODELS = [('dense', None, False), ('81M', '81M', False), ('81M rebuild', '81M', True), ('96M', '96M', False)]


class RebuildKron(MatrixKind):
    """The paper's way: the dense W = sum_f s_f kron(A_f, B_f) rebuilt in every forward, then one
    dense product (bias fused, as in nn.Linear, so the baseline is as fast as it can be)."""

    def __init__(self, kron):
        super().__init__()
        self.kron = kron  # shares the factors, so a model switches back and forth freely

    def forward(self, x):
        k = self.kron
        w = kron_reference(k.scaled_A(), k.B)  # (in, out)
        return F.linear(x, w.t(), k.bias)


def set_rebuild(module, on):
    """Switch every MLP inside module (a GPT or an MLP) between factored and rebuild-every-step."""
    for m in module.modules():
        if isinstance(m, MLP):
            for name in ('c_fc', 'c_proj'):
                lin = getattr(m, name)
                if on and isinstance(lin, KronLinear):
                    setattr(m, name, RebuildKron(lin))
                elif not on and isinstance(lin, RebuildKron):
                    setattr(m, name, lin.kron)


def kron_paths(mlp, n_tokens):
    """'c_fc path/c_proj path' that a Kronecker MLP's forward takes for n_tokens rows."""
    fc_args, proj_args = mlp.c_fc.pair_layout(mlp.c_proj, n_tokens)
    return f"{mlp.c_fc.path(n_tokens, **fc_args)}/{mlp.c_proj.path(n_tokens, **proj_args)}"


def keep_freed_memory():
    """glibc: serve every allocation from the heap and never give it back, so a freed tensor's pages
    are reused instead of being unmapped and faulted in again (the CPU analogue of CUDA's cache)."""
    libc = ctypes.CDLL('libc.so.6')
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30)):
        raise ValueError("mallopt failed; run without --keep-freed-memory")


def model_config(base, shapes, label):
    """GPTConfig of the shape called label in shapes; None for the dense model."""
    if label is None:
        return GPTConfig(**base)
    _, d1, d2, f = next(s for s in shapes if s[0] == label)
    return GPTConfig(**base, mlp='kron', kron_dim1=d1, kron_dim2=d2, kron_factors=f)


def paper_params(config):
    with torch.device('meta'):
        return GPT(config).num_params('paper')


def mac_ratio(config, n_tokens):
    """Multiply-adds of one factored MLP (cheaper contraction order per matrix) over dense's."""
    macs = 0
    for (m1, n1), (m2, n2) in kron_shapes(config):
        c = kron_costs(m1, n1, m2, n2, config.kron_factors, n_tokens)
        macs += min(c['a_first'], c['b_first'])
    return macs / (2 * n_tokens * config.n_embd * config.mlp_width)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def interleaved(fns, repeats, device):
    """{name: [seconds per round]}: one warm-up of each, then every round runs each fn once in turn,
    in reverse order every other round, so no variant always follows the same one."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for r in range(repeats):
        for k in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            fn = fns[k]
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


def ratio(times, num, den):
    """Median over rounds of times[num] / times[den]: each round's two runs were made within seconds
    of each other, so this follows a machine whose speed drifts better than a ratio of medians."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()


# -----------------------------------------------------------------------------
# the four measurements

def bench_mlp(base, shapes, n_tokens, repeats, device, dtype, compile_=False):
    """Rows for the MLP table: dense, rebuild and factored MLP forward + backward on n_tokens."""
    torch.manual_seed(0)
    x = torch.randn(n_tokens, base['n_embd'], device=device, requires_grad=True)
    g = torch.randn(n_tokens, base['n_embd'], device=device)
    ctx = autocast(device, dtype)

    def step_fn(mlp, rebuild):
        params = list(mlp.parameters())
        fwd = torch.compile(mlp) if compile_ else mlp

        def step():
            set_rebuild(mlp, rebuild)
            x.grad = None
            for p in params:
                p.grad = None  # as zero_grad(set_to_none=True) between training steps
            with ctx:
                y = fwd(x)
            y.backward(g.to(y.dtype))
        return step

    if compile_:
        # every MLP instance and rebuild switch is one more compiled entry of MLP.forward; past
        # dynamo's default limit of 8 the rest would silently run eager
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    dense = step_fn(MLP(model_config(base, shapes, None)).to(device), False)
    fns, configs = {}, {}
    for label, *_ in shapes:  # dense runs between each shape's two, so every ratio is of neighbours
        cfg = model_config(base, shapes, label)
        mlp = MLP(cfg).to(device)
        fns[label, 'factored'] = step_fn(mlp, False)
        fns[label, 'dense'] = dense
        fns[label, 'rebuild'] = step_fn(mlp, True)
        configs[label] = (cfg, mlp)
    t = interleaved(fns, repeats, device)
    med = {k: statistics.median(v) for k, v in t.items()}
    rows = []
    for label, d1, d2, f in shapes:
        cfg, mlp = configs[label]
        set_rebuild(mlp, False)  # its own layers again, to report their paths
        rows.append(dict(
            shape=label, cli=f"{d1} {d2} {f}", params=paper_params(cfg),
            mac_ratio=mac_ratio(cfg, n_tokens),
            path=kron_paths(mlp, n_tokens) + (' fused' if mlp.c_fc.fuses_with(mlp.c_proj, n_tokens) else ''),
            dense_ms=1e3 * med[label, 'dense'], rebuild_ms=1e3 * med[label, 'rebuild'],
            factored_ms=1e3 * med[label, 'factored'],
            factored_vs_dense=ratio(t, (label, 'factored'), (label, 'dense')),
            rebuild_vs_factored=ratio(t, (label, 'rebuild'), (label, 'factored')),
            rounds_ms={k: [1e3 * v for v in t[label, k]] for k in ('dense', 'rebuild', 'factored')}))
    return rows


def build_models(base, shapes, device):
    """{shape label or None: (model, AdamW)}, the models that MODELS names."""
    out = {}
    for _, shape, _ in MODELS:
        if shape not in out:
            torch.manual_seed(0)
            model = GPT(model_config(base, shapes, shape)).to(device)
            opt = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device.type)
            out[shape] = (model, opt)
    return out


def train_step_fn(model, opt, rebuild, X, Y, ctx):
    def step():
        set_rebuild(model, rebuild)
        model.train()
        with ctx:
            _, loss = model(X, Y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def bench_train(models, base, batch, seq, repeats, device, dtype):
    X = torch.randint(base['vocab_size'], (batch, seq), device=device)
    Y = torch.roll(X, -1, dims=1)
    ctx = autocast(device, dtype)
    fns = {label: train_step_fn(*models[shape], rebuild, X, Y, ctx) for label, shape, rebuild in MODELS}
    t = interleaved(fns, repeats, device)
    rebuilt = {shape: label for label, shape, rebuild in MODELS if rebuild}  # the paper's way of a shape
    return [dict(model=label, params=models[shape][0].num_params('paper'), step_s=statistics.median(t[label]),
                 tokens_per_s=batch * seq / statistics.median(t[label]), vs_dense=ratio(t, 'dense', label),
                 vs_rebuild=ratio(t, rebuilt[shape], label) if shape in rebuilt and not rebuild else None,
                 rounds_s=t[label])
            for label, shape, rebuild in MODELS]


def bench_eval(models, base, prompt, new_tokens, repeats, device, dtype):
    T = base['block_size']
    X = torch.randint(base['vocab_size'], (1, T), device=device)
    Y = torch.roll(X, -1, dims=1)
    P = X[:, :prompt]
    ctx = autocast(device, dtype)
    evaluated = [(label, shape) for label, shape, rebuild in MODELS if not rebuild]

    def eval_fn(model):
        def run():
            set_rebuild(model, False)
            model.eval()
            with torch.no_grad(), ctx:
                model(X, Y)
        return run

    def gen_fn(model):
        def run():
            set_rebuild(model, False)
            model.eval()
            with ctx:
                model.generate(P, new_tokens, top_k=50, generator=torch.Generator(device).manual_seed(0),
                               use_cache=False)
        return run

    te = interleaved({label: eval_fn(models[shape][0]) for label, shape in evaluated}, repeats, device)
    tg = interleaved({label: gen_fn(models[shape][0]) for label, shape in evaluated}, repeats, device)
    return [dict(model=label, params=models[shape][0].num_params('paper'),
                 eval_tokens_per_s=T / statistics.median(te[label]), eval_vs_dense=ratio(te, 'dense', label),
                 gen_tokens_per_s=new_tokens / statistics.median(tg[label]), gen_vs_dense=ratio(tg, 'dense', label),
                 eval_rounds_s=te[label], gen_rounds_s=tg[label])
            for label, shape in evaluated]


DECODE_SHAPES = ('81M', '96M')
DECODE_BATCHES = (1, 8)


def weight_bytes_per_step(model):
    """Bytes of the weights one decoding step reads: every parameter once (the tied embedding once,
    as the output layer), but of the position table only one row per token."""
    wpe = model.transformer.wpe.weight
    return sum(p.numel() * p.element_size() for p in model.parameters()) - wpe.numel() * wpe.element_size()


def export_bytes(model, factored):
    """Bytes on disk of krony_to_gpt.py's export of model (weights, config, code; no tokenizer)."""
    from krony_to_gpt import export
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'hf')
        export(model, out, factored=factored)
        return sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))


def bench_decode(base, shapes, prompt, new_tokens, repeats, device, dtype):
    """Rows for the decoding table: per batch size, greedy model.generate with its KV cache of each
    model, interleaved; then the bytes read per step and the exports' sizes."""
    torch.manual_seed(0)
    models = {label: GPT(model_config(base, shapes, None if label == 'dense' else label)).to(device).eval()
              for label in ('dense', *DECODE_SHAPES)}
    ctx = autocast(device, dtype)

    def gen_fn(model, P):
        def run():
            with ctx:
                model.generate(P, new_tokens, top_k=1, use_cache=True)
        return run

    rows = []
    for batch in DECODE_BATCHES:
        P = torch.randint(base['vocab_size'], (batch, prompt), device=device)
        t = interleaved({label: gen_fn(m, P) for label, m in models.items()}, repeats, device)
        for label in DECODE_SHAPES:
            rows.append(dict(model=label, batch=batch, tokens_per_s=batch * new_tokens / statistics.median(t[label]),
                             dense_tokens_per_s=batch * new_tokens / statistics.median(t['dense']),
                             vs_dense=ratio(t, 'dense', label), rounds_s=t[label], dense_rounds_s=t['dense']))
    # the same dense export as every factored model's folded one: one dense model, same shapes
    dense_read, dense_disk = weight_bytes_per_step(models['dense']), export_bytes(models['dense'].cpu(), False)
    disk = {label: export_bytes(models[label].cpu(), True) for label in DECODE_SHAPES}
    for row in rows:
        row.update(bytes_read_vs_dense=weight_bytes_per_step(models[row['model']]) / dense_read,
                   disk_bytes=disk[row['model']], dense_disk_bytes=dense_disk,
                   disk_vs_dense=disk[row['model']] / dense_disk)
    return rows


def peak_bytes(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated()
    # ru_maxrss is in kilobytes on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == 'darwin' else rss * 1024


def memory_probe(base, shapes, label, batch, seq, device, dtype, threads):
    """Runs in a fresh process: peak memory once the model is built, after an evaluation forward,
    after one training step (AdamW state included), and the checkpoint size. On CPU the peaks are
    the process's peak RSS (torch and Python included), so evaluation is measured before training."""
    torch.set_num_threads(threads)
    shape, rebuild = next((s, r) for l, s, r in MODELS if l == label)
    torch.manual_seed(0)
    model = GPT(model_config(base, shapes, shape)).to(device)
    set_rebuild(model, rebuild)
    opt = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device.type)
    ctx = autocast(device, dtype)
    X = torch.randint(base['vocab_size'], (1, base['block_size']), device=device)
    sync(device)
    loaded = peak_bytes(device)
    model.eval()
    with torch.no_grad(), ctx:
        model(X, torch.roll(X, -1, dims=1))
    sync(device)
    evaluated = peak_bytes(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    X = torch.randint(base['vocab_size'], (batch, seq), device=device)
    train_step_fn(model, opt, False, X, torch.roll(X, -1, dims=1), ctx)()
    sync(device)
    trained = peak_bytes(device)
    set_rebuild(model, False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'ckpt.pt')
        save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, path)
        size = os.path.getsize(path)
    return dict(model=label, loaded_bytes=loaded, eval_peak_bytes=evaluated,
                train_peak_bytes=trained, checkpoint_bytes=size)


def bench_memory(base, shapes, batch, seq, device, dtype, threads):
    """One fresh process per model (a peak RSS only grows), forked from a server that has imported
    torch once, with glibc's default allocator: the peak is what the model needs, not what a cache keeps."""
    mp = multiprocessing.get_context('forkserver')
    mp.set_forkserver_preload(['torch', 'model'])
    with mp.Pool(1, maxtasksperchild=1) as pool:
        rows = [pool.apply(memory_probe, (base, shapes, label, batch, seq, device, dtype, threads))
                for label, _, _ in MODELS]
    dense = rows[0]
    for row in rows:
        row['checkpoint_vs_dense'] = row['checkpoint_bytes'] / dense['checkpoint_bytes']
        row['train_peak_vs_dense'] = row['train_peak_bytes'] / dense['train_peak_bytes']
    return rows


# -----------------------------------------------------------------------------
# printing

def table(title, header, rows):
    lines = [f"\n{title}\n", '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    print('\n'.join(lines), flush=True)


def mib(b):
    return f"{b / 2 ** 20:,.0f}"


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {torch.get_num_threads()} threads"


TABLES = ('mlp', 'train', 'eval', 'memory', 'decode')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16'])
    p.add_argument('--tables', default=','.join(TABLES), help=f"comma-separated subset of {','.join(TABLES)}")
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads on CPU (default 2)')
    p.add_argument('--repeats', type=int, default=None,
                   help="timed rounds (default 11 mlp, 7 train, 9 eval, 5 decode)")
    p.add_argument('--mlp_tokens', type=int, default=None, help='tokens of the MLP table (default 4096)')
    p.add_argument('--batch', type=int, default=None, help='training batch (default 4)')
    p.add_argument('--seq', type=int, default=None, help='training sequence length (default 256)')
    p.add_argument('--prompt', type=int, default=None, help='generation prompt tokens (default 32)')
    p.add_argument('--new_tokens', type=int, default=None, help='generated tokens (default 32)')
    p.add_argument('--decode_prompt', type=int, default=None, help='decoding table: prompt tokens (default 128)')
    p.add_argument('--decode_tokens', type=int, default=None, help='decoding table: new tokens (default 128)')
    p.add_argument('--compile', action='store_true', help='torch.compile the MLPs of the mlp table')
    p.add_argument('--keep-freed-memory', action='store_true',
                   help="CPU, Linux: keep freed memory in the process (glibc mallopt) instead of the scripts' defaults")
    p.add_argument('--quick', action='store_true', help='tiny stand-in shapes, for the tests')
    p.add_argument('--json', help='also write every measurement to this JSON file')
    args = p.parse_args(argv)
    # one thread in --quick: tiny ops on two threads stall on each other when the machine is busy
    quick = dict(repeats=2, mlp_tokens=256, batch=2, seq=32, prompt=8, new_tokens=4, threads=1,
                 decode_prompt=8, decode_tokens=4)
    full = dict(repeats=None, mlp_tokens=4096, batch=4, seq=256, prompt=32, new_tokens=32, threads=2,
                decode_prompt=128, decode_tokens=128)
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.tables = [t for t in args.tables.split(',') if t]
    unknown = set(args.tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}; choose from {','.join(TABLES)}")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.json:
        check_destination(args.json)  # before minutes of measuring
    with output_lock(args.json) if args.json else contextlib.nullcontext():
        bench(args)


def bench(args):
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no CUDA GPU; run on CPU with --device cpu")
    dtype = {'fp32': torch.float32, 'bf16': torch.bfloat16}[args.dtype]
    if device.type == 'cpu':
        torch.set_num_threads(args.threads)
        if args.keep_freed_memory:
            if not sys.platform.startswith('linux'):
                raise ValueError("--keep-freed-memory needs glibc (Linux)")
            keep_freed_memory()
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on both devices
    base, shapes = (QUICK, QUICK_SHAPES) if args.quick else (GPT2_SMALL, SHAPES)
    results = {'args': dict(vars(args)), 'device': device_name(device),
               'torch': torch.__version__}
    print(f"# python script/bench.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"# {results['device']}; torch {torch.__version__}; {args.dtype}; "
          f"{'freed memory kept in process' if args.keep_freed_memory and device.type == 'cpu' else 'glibc malloc defaults'}"
          f"{'; --quick: tiny stand-in shapes, timings meaningless' if args.quick else ''}")
    rep = lambda default: args.repeats or default  # noqa: E731

    if 'mlp' in args.tables:
        rows = bench_mlp(base, shapes, args.mlp_tokens, rep(11), device, dtype, args.compile)
        results['mlp'] = rows
        table(f"MLP (c_fc, GELU, c_proj, biases) forward + backward on {args.mlp_tokens} tokens, "
              f"median of {rep(11)} interleaved rounds{', torch.compile' if args.compile else ''}",
              ['model', 'dims', 'params', 'MACs vs dense', 'path c_fc/c_proj', 'dense ms', 'rebuild ms',
               'factored ms', 'factored / dense', 'rebuild / factored'],
              [[r['shape'], f"`{r['cli']}`", f"{r['params']:,}", f"{r['mac_ratio']:.2f}", r['path'],
                f"{r['dense_ms']:.1f}", f"{r['rebuild_ms']:.1f}", f"{r['factored_ms']:.1f}",
                f"{r['factored_vs_dense']:.2f}x", f"{r['rebuild_vs_factored']:.2f}x"] for r in rows])

    models = None
    if 'train' in args.tables or 'eval' in args.tables:
        models = build_models(base, shapes, device)
    if 'train' in args.tables:
        rows = bench_train(models, base, args.batch, args.seq, rep(7), device, dtype)
        results['train'] = rows
        table(f"training step (forward, backward, AdamW), batch {args.batch} x {args.seq} tokens, "
              f"median of {rep(7)} interleaved rounds",
              ['model', 'params', 'step s', 'tokens/s', 'vs dense', 'vs rebuild-every-step'],
              [[r['model'], f"{r['params']:,}", f"{r['step_s']:.3f}", f"{r['tokens_per_s']:,.0f}",
                f"{r['vs_dense']:.2f}x", '-' if r['vs_rebuild'] is None else f"{r['vs_rebuild']:.2f}x"]
               for r in rows])
    if 'eval' in args.tables:
        rows = bench_eval(models, base, args.prompt, args.new_tokens, rep(9), device, dtype)
        results['eval'] = rows
        table(f"evaluation forward (1 x {base['block_size']} tokens, loss) and generation "
              f"({args.prompt}-token prompt, {args.new_tokens} new tokens, no KV cache), "
              f"median of {rep(9)} interleaved rounds",
              ['model', 'params', 'eval tokens/s', 'eval vs dense', 'generate tokens/s', 'generate vs dense'],
              [[r['model'], f"{r['params']:,}", f"{r['eval_tokens_per_s']:,.0f}", f"{r['eval_vs_dense']:.2f}x",
                f"{r['gen_tokens_per_s']:,.1f}", f"{r['gen_vs_dense']:.2f}x"] for r in rows])
    del models
    if 'memory' in args.tables:
        rows = bench_memory(base, shapes, args.batch, args.seq, device, dtype, args.threads)
        results['memory'] = rows
        what = ('torch.cuda.max_memory_allocated' if device.type == 'cuda'
                else 'peak RSS of a fresh process per model, torch included, glibc malloc defaults')
        table(f"memory, MiB ({what}): model built, evaluation (1 x {base['block_size']}), "
              f"training step (batch {args.batch} x {args.seq}, AdamW state included); "
              f"checkpoint = torch.save of the state dict",
              ['model', 'built', 'eval peak', 'train peak', 'train peak vs dense', 'checkpoint MiB',
               'checkpoint vs dense'],
              [[r['model'], mib(r['loaded_bytes']), mib(r['eval_peak_bytes']), mib(r['train_peak_bytes']),
                f"{r['train_peak_vs_dense']:.2f}x", f"{r['checkpoint_bytes'] / 2 ** 20:,.1f}",
                f"{r['checkpoint_vs_dense']:.2f}x"] for r in rows])
    if 'decode' in args.tables:
        rows = bench_decode(base, shapes, args.decode_prompt, args.decode_tokens, rep(5), device, dtype)
        results['decode'] = rows
        table(f"decoding: greedy model.generate with the KV cache, {args.decode_prompt}-token prompt, "
              f"{args.decode_tokens} new tokens (tokens/s of the whole call), median of {rep(5)} interleaved "
              f"rounds; weight bytes read per step and krony_to_gpt.py's --factored export on disk, "
              f"against dense GPT-2 and its folded export",
              ['model', 'batch', 'dense tokens/s', 'factored tokens/s', 'factored vs dense',
               'weight bytes read vs dense', 'export MiB', 'export vs dense'],
              [[r['model'], str(r['batch']), f"{r['dense_tokens_per_s']:,.1f}", f"{r['tokens_per_s']:,.1f}",
                f"{r['vs_dense']:.2f}x", f"{r['bytes_read_vs_dense']:.2f}x", f"{r['disk_bytes'] / 2 ** 20:,.1f}",
                f"{r['disk_vs_dense']:.2f}x"] for r in rows])
    if args.json:
        atomic_write(args.json, lambda f: json.dump(results, f, indent=1), mode='w')


if __name__ == '__main__':
    errors.run(main)
