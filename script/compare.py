"""
Krony-PT's claims tested in a CPU miniature where the MLPs matter: dense character-level teachers
whose MLP matrices hold 63% of their parameters, compressed by every method, every student trained
on the same tokens, every figure on held-out text. The teachers are the replicates.

    python script/compare.py                 # the default run (SETTINGS['default']: 3 teachers)
    python script/compare.py --quick         # tiny sizes, two teachers: a smoke test of every mechanism
    python script/compare.py --only vl,lowrank --teacher out/compare --out out/compare_try
    python script/compare.py --report        # results.md and the PNG again from results.json

Regime: WikiText-103's validation split as characters (data/wikitext103_valid_char: train on its
first 90%, choose checkpoints and learning rates on the last 10%), the test split held out: test
loss, perplexity and bits per byte come from perplexity_eval.py on its first test_chars characters.
A teacher is GPT-2's architecture at 6 layers x 96 wide (config/mini_teacher.py) with its own
vocabulary of 143 characters, so that, as in GPT-2 small, the MLPs are most of the model.

Design, fixed before any run (SETTINGS, the two config files):
- teachers: one per seed in SETTINGS (same config, seed sets init and data order); every student
  row runs on every teacher, with the teacher's seed; differences are paired by teacher.
- learning rate: each row trains on the first teacher at every rate of lr_grid (min_lr a tenth of
  it); the rate with the lowest validation loss is then used on every teacher. Test text is scored
  only after the choice, and only for the chosen rate.
- distillation (DistilGPT2's loss) is a factor: Kronecker, low-rank and truncation each with and
  without it. Every student that starts from the teacher keeps its position embeddings frozen
  (DistilGPT2's choice, applied to all, so that distillation is the only difference).
- longer training: the best 81M-like Kronecker row (lowest validation loss on the first teacher),
  low-rank and truncation + distillation at long_factor x the student steps, first teacher.
- structure: structure_diagnostics (kron_decompose.py) of every teacher's MLP matrices at the
  81M-like shape.
- statistics: 95% t intervals over teachers; claims and distillation effects tested by a paired t
  test over teachers, Holm-corrected within each table; gap kept measured from a uniform guess and
  from a bigram model of the training text.

Every stage runs the toolkit's own scripts as subprocesses (logs in OUT/logs/), `jobs` at a time
with one thread each, and is cached in OUT/stages/ (OUT/settings.json guards that a folder holds
one design): a rerun, or --only ROW, trains only what is missing; --teacher reuses the teachers of
another run's folder (or checkpoints). Writes OUT/results.json, OUT/results.md and
OUT/val_curves.png; --report writes the last two again from results.json alone.
"""

import argparse
import json
import math
import os
import pickle
import re
import statistics
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import errors  # noqa: E402
from outputs import atomic_write, check_destination, output_lock  # noqa: E402
from stages import ROOT, Progress, forward_signals, parse_train_log, run_script, wikitext_test_head  # noqa: E402

DATASET = 'wikitext103_valid_char'

TEACHER, STUDENT = 'config/mini_teacher.py', 'config/mini_student.py'
# the rows of the default run: Van Loan with and without normalisation (the paper's 81M init),
# the activation-aware fit (with and without the rescale, which undoes part of its gain on the
# activations) and the reordered hidden units, both together, low-rank and its activation-aware
# fit, truncation; Kronecker, low-rank and truncation with and without distillation.
# Left out so that the run fits about 2.5 hours on 2 cores (each row costs 3 grid runs and one per
# other teacher; all available with --only): the 96M-like VL and prune rows, dense from scratch,
# learnable scalars, random factors, the factor-count rows f1/f2/f4 and InRank.
DEFAULT_ROWS = ('vl', 'vl_norm', 'vl_calib', 'vl_norm_calib', 'vl_norm_perm', 'vl_norm_calib_perm',
                'lowrank', 'lowrank_calib', 'truncate', 'vl_norm_kd', 'lowrank_kd', 'truncate_kd')
# fixed before the first run: the teachers' seeds, the learning-rate grid, the longer check's
# factor, the test text, the calibration tokens, InRank's ranks; the models and schedules are the
# two config files'.
# --quick shrinks everything to a smoke test.
SETTINGS = {
    'default': dict(teachers=(0, 1, 2), lr_grid=(1e-3, 3e-3, 1e-2), long_factor=4, test_chars=200_000,
                    calib_tokens=16384, inrank_init_modes=2, inrank_buffer_modes=12, teacher=[], student=[]),
    'quick': dict(teachers=(0, 1), lr_grid=(1e-3, 1e-2), long_factor=2, test_chars=3_000, calib_tokens=2048,
                  inrank_init_modes=2, inrank_buffer_modes=2,
                  teacher=['--n_layer=2', '--n_head=2', '--n_embd=24', '--block_size=32', '--batch_size=4',
                           '--max_iters=12', '--lr_decay_iters=12', '--warmup_iters=2', '--eval_interval=6',
                           '--eval_iters=2', '--log_interval=3'],
                  student=['--n_layer=2', '--n_head=2', '--n_embd=24', '--block_size=32', '--batch_size=4',
                           '--max_iters=4', '--lr_decay_iters=4', '--warmup_iters=1', '--eval_interval=2',
                           '--eval_iters=2', '--log_interval=1']),
}
# what the teachers and their stages depend on: another folder's teachers are reused only if equal
TEACHER_KEYS = ('teachers', 'test_chars', 'teacher')


def resolved(config, overrides):
    """The train.py config that a config file plus overrides give (train.py's own reading)."""
    import train
    from configurator import load_config
    return load_config(train.DEFAULTS, [os.path.join(ROOT, config), *overrides])


# DistilGPT2's public training command: its loss weights. Its other choice, frozen position
# embeddings, is applied to every student that starts from the teacher (Experiment.train_student).
DISTIL = dict(kd_alpha_ce=5.0, kd_alpha_clm=2.0, kd_alpha_cos=1.0, kd_temperature=2.0)


def matched_rank(n_embd, kron_params):
    """Rank whose U (n, r) + V (r, 4n) has the parameters of one Kronecker matrix."""
    return max(1, round(kron_params / (n_embd + 4 * n_embd)))


def inrank_schedule(student_iters):
    """InRank's stage 1 (rank growth) for half the student steps, stage 2 (fixed rank) for the
    rest; the first check and the gap between checks scaled to stage 1 as InRank's GPT-2 run
    places them in its 130 steps (the first in step 28, then about every 3)."""
    stage1 = max(2, student_iters // 2)
    return dict(stage1=stage1, warmup=max(1, round(stage1 * 27 / 130)), gap=max(1, round(stage1 * 3 / 130)))


def variants(s):
    """name -> (label, init: [(script, args)] from the teacher or None for scratch, train overrides).
    Shapes follow the paper's models on n_embd: "81M" (n, n) x (1, 4), "96M" (n/2, 4n) x (2, 1),
    "80M-2" (n/3, 4n/3) x (3, 3) with 1, 2 or 4 factors. Kronecker (VL + normalisation), low-rank
    and truncation come with and without distillation (NAME_kd)."""
    n = s['n_embd']
    k81, k96, k80 = (n, n), (n // 2, 4 * n), (n // 3, 4 * n // 3)
    rank = matched_rank(n, n * n + 4)

    def kron(dims, factors, *flags):
        return [('kron_decompose.py', [*dims, factors, *flags])]
    # activation-aware fits calibrate on the students' training text (calib.py holds out 1 in 5)
    calib = ['--calib', s.get('dataset', DATASET), '--calib_tokens', s.get('calib_tokens', 0)]

    table = {
        'vl': ('81M-like VL', kron(k81, 1, '--no-normalize'), {}),
        'vl_norm': ('81M-like VL + normalisation', kron(k81, 1), {}),
        'vl_norm_scalers': ('81M-like VL + norm. + scalars', kron(k81, 1, '--scalers'), {}),
        'vl_calib': ('81M-like activation-aware VL', kron(k81, 1, *calib, '--no-normalize'), {}),
        'vl_norm_calib': ('81M-like activation-aware VL + norm.', kron(k81, 1, *calib), {}),
        'vl_norm_perm': ('81M-like VL + norm., reordered units', kron(k81, 1, '--permute'), {}),
        'vl_norm_calib_perm': ('81M-like act.-aware VL + norm., reordered', kron(k81, 1, *calib, '--permute'), {}),
        'random': ('81M-like random factors', kron(k81, 1, '--init', 'random'), {}),
        'vl96': ('96M-like VL', kron(k96, 1, '--no-normalize'), {}),
        'vl96_norm': ('96M-like VL + normalisation', kron(k96, 1), {}),
        'prune96': ('96M-like prune', kron(k96, 1, '--init', 'prune', '--no-normalize'), {}),
        'prune96_norm': ('96M-like prune + normalisation', kron(k96, 1, '--init', 'prune'), {}),
        'f1': ('80M-2-like, 1 factor (+ scalars)', kron(k80, 1, '--scalers'), {}),
        'f2': ('80M-2-like, 2 factors (+ scalars)', kron(k80, 2, '--scalers'), {}),
        'f4': ('80M-2-like, 4 factors (+ scalars)', kron(k80, 4, '--scalers'), {}),
        'lowrank': (f'low-rank SVD, rank {rank}', [('compress.py', ['lowrank', rank])], {}),
        'lowrank_calib': (f'activation-aware low-rank, rank {rank}', [('compress.py', ['lowrank', rank, *calib])], {}),
        'truncate': ('half the layers', [('compress.py', ['truncate'])], {}),
        'inrank': ('InRank from scratch', None, {}),
        'scratch': ('dense from scratch', None, {}),
    }
    for name in ('vl_norm', 'lowrank', 'truncate'):
        label, init, _ = table[name]
        table[f'{name}_kd'] = (f'{label} + distillation', init, dict(DISTIL))
    return table


# (claim, [(a, b)] pairs of rows, what it predicts for each pair): 'better' that a beats b,
# 'equal' that a and b do not differ; the claims as the papers make them. A pair counts only when
# both rows ran.
CLAIMS = [
    ('VL initialisation beats random initialisation', [('vl_norm', 'random'), ('vl', 'random')], 'better'),
    ('normalisation improves VL', [('vl_norm', 'vl'), ('vl96_norm', 'vl96')], 'better'),
    ('learnable scalars improve VL + normalisation', [('vl_norm_scalers', 'vl_norm')], 'better'),
    ('prune beats VL at the 96M shape', [('prune96', 'vl96'), ('prune96_norm', 'vl96_norm')], 'better'),
    ('more factors are better (2 vs 1, 4 vs 2)', [('f2', 'f1'), ('f4', 'f2')], 'better'),
    ('Kronecker beats low-rank SVD at equal size', [('vl_norm', 'lowrank'), ('vl_norm_kd', 'lowrank_kd')], 'better'),
    ('Kronecker beats truncation (DistilGPT2) at equal size',
     [('vl_norm', 'truncate'), ('vl_norm_kd', 'truncate_kd')], 'better'),
    ('data-aware init beats Van Loan (and plain SVD)',
     [('vl_calib', 'vl'), ('vl_norm_calib', 'vl_norm'), ('vl_norm_calib_perm', 'vl_norm_perm'),
      ('lowrank_calib', 'lowrank')], 'better'),
    ('the free reordering of hidden units helps',
     [('vl_norm_perm', 'vl_norm'), ('vl_norm_calib_perm', 'vl_norm_calib')], 'better'),
    ('distillation gives the Kronecker student no gain', [('vl_norm_kd', 'vl_norm')], 'equal'),
    ('initialising from the teacher beats training from scratch',
     [('vl_norm', 'scratch'), ('vl_norm', 'inrank')], 'better'),
]
# the distillation factor: each compressed student with its loss against without
DISTIL_PAIRS = [('vl_norm_kd', 'vl_norm'), ('lowrank_kd', 'lowrank'), ('truncate_kd', 'truncate')]
# the longer check: the best of these (validation, first teacher) and the two other methods
LONG_KRON = ('vl', 'vl_norm', 'vl_norm_scalers', 'vl_calib', 'vl_norm_calib', 'vl_norm_perm', 'vl_norm_calib_perm', 'vl_norm_kd')
LONG_OTHERS = ('lowrank', 'truncate_kd')
ALPHA = 0.05          # family-wise error of each table (Holm)
EQUAL_MARGIN = 0.01   # bits/byte: an 'equal' claim holds when the 95% interval lies within +-this


def train_args(s, who, out_dir, seed, **extra):
    """train.py's command line for a teacher or a student: its config file, the setting's
    overrides, then this run's."""
    config, overrides = (TEACHER, s['teacher']) if who == 'teacher' else (STUDENT, s['student'])
    args = dict(out_dir=out_dir, dataset=s['dataset'], seed=seed, **extra)
    return ['train.py', config, *overrides, *[f'--{k}={v}' for k, v in args.items()]]


def run_key(seed, name, lr, long=False):
    return f"t{seed}_{name}_lr{lr:g}" + ('_long' if long else '')


class Experiment:
    """The stages of one design in OUT, each cached in OUT/stages/KEY.json once it has finished;
    teachers[seed] = ('train', None) | ('dir', another run's OUT) | ('ckpt', checkpoint)."""

    def __init__(self, s, out, teachers):
        self.s, self.out, self.sources = s, out, teachers
        self.table = variants(s)
        self.locks, self.guard = defaultdict(threading.Lock), threading.Lock()
        for d in ('logs', 'init', 'runs', 'ppl', 'stages'):
            os.makedirs(os.path.join(out, d), exist_ok=True)
        self.test_file = wikitext_test_head(s['test_chars'], os.path.join(out, 'test_text.txt'))

    def lock(self, key):
        with self.guard:
            return self.locks[key]

    def cached(self, key, make):
        """make()'s result, computed once per folder (side-by-side jobs wait for each other)."""
        path = os.path.join(self.out, 'stages', f'{key}.json')
        with self.lock(key):
            if not os.path.isfile(path):
                res = make()
                atomic_write(path, lambda f: json.dump(res, f, indent=1), mode='w')
            with open(path) as f:
                return json.load(f)

    def run(self, name, args):
        return run_script(args, os.path.join(self.out, 'logs', f'{name}.log'), threads=1)

    def test_eval(self, name, model):
        """perplexity_eval.py on the test text: dict(ppl, bpb, test_nll)."""
        js = os.path.join(self.out, 'ppl', f'{name}.json')
        self.run(f'ppl_{name}', ['perplexity_eval.py', model, '--text_file', self.test_file, '--json', js,
                                 '--batch_size', 4])
        with open(js) as f:
            res = next(iter(json.load(f)['results'].values()))
        return dict(ppl=res['ppl'], bpb=res['bpb'], test_nll=res['nll_sum'] / res['n_scored'])

    # ------------------------------------------------------------------ teachers

    def teacher_ckpt(self, seed):
        kind, src = self.sources[seed]
        if kind == 'ckpt':
            return src
        return os.path.join(src if kind == 'dir' else self.out, 'teachers', f't{seed}', 'best.pt')

    def teacher(self, seed):
        """A teacher's record: its curve (none for a bare checkpoint), best val loss, parameters,
        test figures and structure diagnostics; another run's folder gives its record as it is."""
        kind, src = self.sources[seed]
        if kind == 'dir':
            with open(os.path.join(src, 'stages', f'teacher_t{seed}.json')) as f:
                record = json.load(f)
            return self.cached(f'teacher_t{seed}', lambda: record)
        return self.cached(f'teacher_t{seed}', lambda: self.make_teacher(seed))

    def make_teacher(self, seed):
        from checkpoint import load_model
        from kron_decompose import model_structure
        ckpt = self.teacher_ckpt(seed)
        if self.sources[seed][0] == 'train':
            rec = parse_train_log(self.run(f'teacher_t{seed}', train_args(self.s, 'teacher', os.path.dirname(ckpt), seed)))
        else:
            rec = dict(evals=[], params=None)
        model, meta = load_model(ckpt)
        n = model.config.n_embd
        rec.update(seed=seed, best_val=meta['best_val_loss'], params=rec['params'] or model.num_params('paper'),
                   mlp_params=model.mlp_params(), structure=model_structure(model, n, n, 1))
        return dict(rec, **self.test_eval(f'teacher_t{seed}', ckpt))

    # ------------------------------------------------------------------ students

    def make_init(self, seed, name):
        """The row's initialisation from this teacher (shared by a row and its _kd twin)."""
        base = name.removesuffix('_kd')
        path = os.path.join(self.out, 'init', f't{seed}_{base}.pt')
        with self.lock(path):
            if not os.path.isfile(path):
                for script, args in self.table[name][1]:
                    seeded = ['--seed', seed] if 'random' in args else []  # random factors from the teacher's seed
                    self.run(f'init_t{seed}_{base}', [script, *args, *seeded, '--from', self.teacher_ckpt(seed),
                                                      '--out', path, '--force'])
        return path

    def student(self, seed, name, lr, long=False):
        """The training record of a row on a teacher at a learning rate (validation only)."""
        key = run_key(seed, name, lr, long)
        return self.cached(f'train_{key}', lambda: self.train_student(seed, name, lr, long, key))

    def test(self, seed, name, lr, long=False):
        """Test figures of a run's best checkpoint: call only once its rate has been chosen."""
        key = run_key(seed, name, lr, long)
        return self.cached(f'test_{key}', lambda: self.test_eval(key, os.path.join(self.out, 'runs', key, 'best.pt')))

    def train_student(self, seed, name, lr, long, key):
        s, (_, init, extra) = self.s, self.table[name]
        self.teacher(seed)  # waits for a teacher still training
        out_dir = os.path.join(self.out, 'runs', key)
        extra = dict(extra, learning_rate=lr, min_lr=lr / 10)
        if long:
            extra.update(max_iters=s['student_iters'] * s['long_factor'], lr_decay_iters=s['student_iters'] * s['long_factor'])
        if name == 'inrank':
            res = self.train_inrank(out_dir, seed, key, extra)
        else:
            if init is None:
                extra['init_from'] = 'scratch'
            else:  # DistilGPT2's frozen positions for every student that starts from the teacher
                extra.update(init_from=self.make_init(seed, name), freeze_pos_emb=True)
            if 'kd_alpha_ce' in extra:
                extra['kd_teacher'] = self.teacher_ckpt(seed)
            res = parse_train_log(self.run(key, train_args(s, 'student', out_dir, seed, **extra)))
        return dict(res, best_val=min(e[2] for e in res['evals']), mlp_params=mlp_params(os.path.join(out_dir, 'best.pt')))

    def train_inrank(self, out_dir, seed, key, schedule):
        """InRank as its code runs: stage 1 from scratch (kaiming-uniform factors) with rank growth,
        truncation to the rank found, stage 2 at that rank continuing stage 1's run (step count,
        learning-rate schedule, Adam moments sliced to the kept ranks)."""
        s = self.s
        sch = inrank_schedule(schedule.get('max_iters', s['student_iters']))
        stage1 = out_dir + '_stage1'
        log1 = self.run(f'{key}_stage1', train_args(
            s, 'student', stage1, seed, init_from='scratch', **dict(schedule, max_iters=sch['stage1']),
            mlp='lowrank', lowrank_rank=0, lowrank_init='inrank', inrank=True, inrank_unit='step',
            inrank_init_modes=s['inrank_init_modes'], inrank_buffer_modes=s['inrank_buffer_modes'],
            inrank_warmup_iter=sch['warmup'], inrank_gap_iter=sch['gap']))
        cut = self.run(f'{key}_truncate', ['compress.py', 'lowrank', 'found', '--from',
                                           os.path.join(stage1, 'ckpt.pt'), '--resume_dir', out_dir, '--force'])
        rank = int(re.search(r'keeps the largest, (\d+)', cut).group(1))
        log2 = self.run(key, train_args(s, 'student', out_dir, seed, init_from='resume', **schedule))
        p1, p2 = parse_train_log(log1), parse_train_log(log2)
        return dict(evals=p1['evals'] + p2['evals'], ms_per_step=p2['ms_per_step'], params=p2['params'],
                    rank=rank, rank_changes=p1['rank_changes'])


def mlp_params(path):
    """Parameters of a checkpoint's MLP weight matrices (factors, scalars; biases excluded)."""
    from checkpoint import load_model
    return load_model(path)[0].mlp_params()


def choose_lr(grid):
    """The rate of [(lr, best val loss)] with the lowest validation loss (a tie: the smaller rate)."""
    return min(sorted(grid), key=lambda g: g[1])[0]


# -----------------------------------------------------------------------------
# statistics

def betainc(a, b, x):
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (modified
    Lentz), evaluated on the side of the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where it converges."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - betainc(b, a, 1.0 - x)
    front = math.exp(a * math.log(x) + b * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)) / a
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(1000):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            return front * (f - 1.0)
    raise ValueError(f"betainc({a}, {b}, {x}) did not converge")


def t_two_sided_p(t, df):
    """P(|T| >= |t|) for Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    return betainc(df / 2, 0.5, df / (df + t * t)) if math.isfinite(t) else 0.0


def t_quantile(p, df):
    """The p-quantile (p > 0.5) of Student's t, by bisection on the two-sided tail."""
    lo, hi = 0.0, 1e7
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > 2 * (1 - p) else (lo, mid)
    return (lo + hi) / 2


def t_interval(xs, level=0.95):
    """(mean, half-width of the t interval over the replicates; None for fewer than two)."""
    m = statistics.mean(xs)
    if len(xs) < 2:
        return m, None
    return m, t_quantile(1 - (1 - level) / 2, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))


def paired_test(diffs):
    """One-sample t test of paired differences against 0: dict(diff, half (95% interval), p, n)."""
    m, half = t_interval(diffs)
    p = None
    if len(diffs) > 1:
        se = statistics.stdev(diffs) / math.sqrt(len(diffs))
        p = t_two_sided_p(m / se, len(diffs) - 1) if se > 0 else float(m == 0)
    return dict(diff=m, half=half, p=p, n=len(diffs))


def holm(ps):
    """Holm's step-down adjusted p-values (None stays None): the k-th smallest of m times m - k + 1,
    never below an earlier one, at most 1."""
    order = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    out, running = [None] * len(ps), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * ps[i]))
        out[i] = running
    return out


def bigram_bpb(train_ids, test_ids, vocab, n_bytes):
    """Bits per byte of an add-one bigram model of the training ids on the test ids, every test
    token but the first scored (perplexity_eval.py's convention), over n_bytes bytes."""
    import numpy as np
    train_ids, test_ids = np.asarray(train_ids, dtype=np.int64), np.asarray(test_ids, dtype=np.int64)
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1)
    probs = (counts + 1) / (counts.sum(axis=1, keepdims=True) + vocab)
    return float(-np.log2(probs[test_ids[:-1], test_ids[1:]]).sum() / n_bytes)


def gap_kept(bpb, teacher_bpb, base_bpb):
    """Share of the base -> teacher gap that a student keeps: 1 is the teacher, 0 the base (a
    uniform guess over the vocabulary, or the bigram model)."""
    return (base_bpb - bpb) / (base_bpb - teacher_bpb)


def pair_diffs(runs, better, worse):
    """Test bits/byte of `worse` minus `better`, paired by teacher (positive: `better` is better)."""
    a = {r['teacher']: r['bpb'] for r in runs if r['name'] == better}
    b = {r['teacher']: r['bpb'] for r in runs if r['name'] == worse}
    return [b[k] - a[k] for k in sorted(a) if k in b]


def verdict(c, prediction):
    """holds / reversed / undetermined, from the Holm-adjusted p and the 95% interval. A 'better'
    claim holds or is reversed when the difference is significant; an 'equal' one is reversed by a
    significant difference and holds only when its interval lies within +-EQUAL_MARGIN."""
    significant = c['p_holm'] is not None and c['p_holm'] < ALPHA
    if prediction == 'better':
        return ('holds' if c['diff'] > 0 else 'reversed') if significant else 'undetermined'
    if significant:
        return f"reversed ({c['better'] if c['diff'] > 0 else c['worse']} is better)"
    within = c['half'] is not None and abs(c['diff']) + c['half'] <= EQUAL_MARGIN
    return 'holds' if within else 'undetermined'


def comparisons(runs, pairs):
    """[dict(better, worse, diff, half, p, p_holm, n)] for the pairs whose rows both ran, Holm
    across them."""
    out = []
    for a, b in pairs:
        diffs = pair_diffs(runs, a, b)
        if diffs:
            out.append(dict(paired_test(diffs), better=a, worse=b))
    for c, p in zip(out, holm([c['p'] for c in out])):
        c['p_holm'] = p
    return out


# -----------------------------------------------------------------------------
# tables and curves (from results.json alone)

def pm(xs, fmt):
    """'mean ± half-width of the 95% t interval' over teachers ('mean' alone for one)."""
    m, half = t_interval(xs)
    return f"{m:{fmt}}" if half is None else f"{m:{fmt}} ± {half:{fmt}}"


def signed(c):
    half = '' if c['half'] is None else f" ± {c['half']:.4f}"
    p = '-' if c['p_holm'] is None else f"{c['p_holm']:.3f}"
    return f"{c['diff']:+.4f}{half} (n={c['n']}) | {p}"


def variant_table(res, table):
    s, teachers, runs = res['settings'], res['teachers'], res['runs']
    bpb_t = {t['seed']: t['bpb'] for t in teachers}
    lines = ['| variant | params | MLP matrices | learning rate: chosen (val loss at ' +
             ' / '.join(f"{lr:g}" for lr in s['lr_grid']) + ', first teacher) | best val loss | test bits/byte | '
             'gap kept from uniform | gap kept from bigram |', '|' + '---|' * 8,
             f"| dense teacher ({s['teacher_iters']} steps) | {teachers[0]['params']:,} | {teachers[0]['mlp_params']:,} | "
             f"{s['teacher_lr']:g} (config) | {pm([t['best_val'] for t in teachers], '.3f')} | "
             f"{pm([t['bpb'] for t in teachers], '.4f')} | 100% | 100% |"]
    for name in res['rows']:
        rs = [r for r in runs if r['name'] == name]
        grid = ' / '.join(f"{v:.3f}" for _, v in res['grid'][name])
        ranks = f" (rank found {', '.join(str(r['rank']) for r in rs)})" if name == 'inrank' else ''
        gaps = [pm([100 * gap_kept(r['bpb'], bpb_t[r['teacher']], base) for r in rs], '.1f') + '%'
                for base in (res['fresh_bpb'], res['bigram_bpb'])]
        lines.append(f"| {table[name][0]}{ranks} | {rs[0]['params']:,} | {rs[0]['mlp_params']:,} | "
                     f"{res['chosen'][name]:g} ({grid}) | {pm([r['best_val'] for r in rs], '.3f')} | "
                     f"{pm([r['bpb'] for r in rs], '.4f')} | {gaps[0]} | {gaps[1]} |")
    return lines


def claims_table(runs):
    lines = ['| claim | comparison (paired by teacher) | difference in test bits/byte (95% t interval) | '
             'p (Holm) | verdict |', '|---|---|---|---|---|']
    flat = [(claim, a, b, prediction) for claim, pairs, prediction in CLAIMS for a, b in pairs]
    done = {(c['better'], c['worse']): c for c in comparisons(runs, [(a, b) for _, a, b, _ in flat])}
    for claim, a, b, prediction in flat:
        if (a, b) in done:
            said = f"{a} better than {b}" if prediction == 'better' else f"{a} equal to {b}"
            lines.append(f"| {claim} | {said} | {signed(done[(a, b)])} | {verdict(done[(a, b)], prediction)} |")
    return lines


def distillation_table(runs):
    lines = ['| student | distillation\'s gain in test bits/byte (95% t interval) | p (Holm) | effect |',
             '|---|---|---|---|']
    for c in comparisons(runs, DISTIL_PAIRS):
        effect = {'holds': 'helps', 'reversed': 'hurts'}.get(verdict(c, 'better'), 'undetermined')
        lines.append(f"| {c['worse']} | {signed(c)} | {effect} |")
    return lines


def long_table(res):
    if not res['long']:
        return []
    s = res['settings']
    short = {r['name']: r for r in res['runs'] if r['teacher'] == res['long'][0]['teacher']}
    steps = s['student_iters']
    lines = [f"| row (teacher seed {res['long'][0]['teacher']}) | learning rate | test bits/byte at {steps} steps | "
             f"at {steps * s['long_factor']} steps |", '|---|---|---|---|']
    for r in res['long']:
        lines.append(f"| {r['name']} | {r['lr']:g} | {short[r['name']]['bpb']:.4f} | {r['bpb']:.4f} |")
    order = lambda rows: ' < '.join(r['name'] for r in sorted(rows, key=lambda r: r['bpb']))
    lines += ['', f"Order by test bits/byte: at {steps} steps {order([short[r['name']] for r in res['long']])}; "
              f"at {steps * s['long_factor']} steps {order(res['long'])}."]
    return lines


def structure_table(res):
    lines = ["| teacher (seed) | s2/s1 of rearrange(W) | energy the Van Loan fit keeps | a random direction's share | "
             "Van Loan rel. error | same-size truncated SVD rel. error (rank) |", '|---|---|---|---|---|---|']
    def span(rows, k, fmt):
        lo, hi = f"{min(r[k] for r in rows):{fmt}}", f"{max(r[k] for r in rows):{fmt}}"
        return lo if lo == hi else f"{lo}-{hi}"

    for t in res['teachers']:
        st = t['structure']
        lines.append(f"| {t['seed']} | {span(st, 'sigma_ratio', '.2f')} | {span(st, 'vl_energy', '.3f')} | "
                     f"{span(st, 'random_share', '.3f')} | {span(st, 'vl_rel_err', '.3f')} | "
                     f"{span(st, 'svd_rel_err', '.3f')} ({st[0]['svd_rank']}) |")
    return lines


def markdown(res):
    s, table = res['settings'], variants(res['settings'])
    n = len(res['teachers'])
    lines = [f"`{res['command']}`: {res['minutes']:.1f} min; {n} teacher(s) (seeds "
             f"{', '.join(str(t['seed']) for t in res['teachers'])}), every row on each; test text: the first "
             f"{s['test_chars']:,} characters of WikiText-103 test (perplexity_eval.py, window protocol, "
             f"{s['block_size']}-character windows). ± is the half-width of the 95% t interval over teachers.", '']
    lines += variant_table(res, table)
    claims, distil = claims_table(res['runs']), distillation_table(res['runs'])
    if len(claims) > 2:  # a table's rows beyond its header: only pairs whose rows both ran
        lines += ['', 'Claims (differences paired by teacher, second minus first: positive when the first is better; '
                  f'Holm across this table; verdict at family-wise {ALPHA}):', '', *claims]
    if len(distil) > 2:
        lines += ['', 'The distillation factor (with minus without; Holm across these rows):', '', *distil]
    long = long_table(res)
    if long:
        lines += ['', f"Longer training ({s['long_factor']}x the student steps, the chosen rates, one teacher):", '']
        lines += long
    lines += ['', f"Structure of the teachers' {2 * s['n_layer']} MLP matrices at the 81M-like shape "
              f"(`{s['n_embd']} {s['n_embd']} 1`; min-max over the matrices; kron_decompose.py's "
              "structure_diagnostics):", '']
    lines += structure_table(res)
    shown = {k: v for k, v in s.items() if k != 'dataset'}
    lines += ['', f"Teachers `{TEACHER}`, students `{STUDENT}`; settings {json.dumps(shown)}; distillation "
              f"{json.dumps(res['distil'])}; every student started from a teacher keeps its position embeddings "
              "frozen. val loss: train.py's mean over the same validation batches for every run (nats per "
              "character); the lowest chooses the checkpoint and, on the first teacher, the learning rate. "
              f"Gap kept: (base - student) / (base - teacher) in test bits per byte, per teacher, with base a "
              f"uniform guess over the vocabulary ({res['fresh_bpb']:.4f} bits/byte) or an add-one bigram model "
              f"of the training text ({res['bigram_bpb']:.4f}). An 'equal' claim holds when its interval lies "
              f"within ±{EQUAL_MARGIN} bits/byte."]
    return '\n'.join(lines) + '\n'


def plot_curves(res, path):
    """Validation loss against step per row at its chosen rate (mean over teachers, band min-max),
    and the longer check's curves beside the same rows' short runs on that teacher."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    table, runs = variants(res['settings']), res['runs']
    groups = [('Kronecker inits and shapes', ['vl', 'vl_norm', 'vl_norm_scalers', 'vl_calib', 'vl_norm_calib', 'vl_norm_perm',
                                              'vl_norm_calib_perm', 'random', 'vl96', 'vl96_norm',
                                              'prune96', 'prune96_norm', 'f1', 'f2', 'f4']),
              ('equal size: Kronecker, low-rank, truncation; scratch',
               ['vl_norm', 'lowrank', 'lowrank_calib', 'truncate', 'scratch', 'inrank']),
              ('with distillation', ['vl_norm_kd', 'lowrank_kd', 'truncate_kd'])]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey=True)
    best_teacher = statistics.mean(t['best_val'] for t in res['teachers'])
    lowest = min([best_teacher] + [e[2] for r in runs + res['long'] for e in r['evals']])
    for ax, (title, names) in zip(axes.flat, groups):
        for name in names:
            rs = [r for r in runs if r['name'] == name]
            if rs:
                steps = [e[0] for e in rs[0]['evals']]
                vals = [[r['evals'][i][2] for r in rs] for i in range(len(steps))]
                ax.plot(steps, [statistics.mean(v) for v in vals], label=f"{table[name][0]} ({res['chosen'][name]:g})")
                ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], alpha=0.2)
        ax.set_title(title)
    ax = axes.flat[3]
    for r in res['long']:
        line, = ax.plot([e[0] for e in r['evals']], [e[2] for e in r['evals']], label=f"{table[r['name']][0]} ({r['lr']:g})")
        short = next(x for x in runs if x['name'] == r['name'] and x['teacher'] == r['teacher'])
        ax.plot([e[0] for e in short['evals']], [e[2] for e in short['evals']], ls=':', color=line.get_color())
    ax.set_title(f"{res['settings']['long_factor']}x the steps (dotted: the usual run), teacher seed "
                 f"{res['long'][0]['teacher'] if res['long'] else '-'}")
    for ax in axes.flat:
        ax.axhline(best_teacher, color='k', ls='--', lw=1, label='teachers (mean best)')
        ax.set_xlabel('student step')
        ax.set_ylim(lowest - 0.05, best_teacher + 1.0)
        ax.legend(fontsize=6)
    for ax in axes[:, 0]:
        ax.set_ylabel('validation loss (nats per character)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out, res):
    """results.md and val_curves.png from the run's results (as results.json holds them)."""
    md = markdown(res)
    atomic_write(os.path.join(out, 'results.md'), lambda f: f.write(md), mode='w')
    plot_curves(res, os.path.join(out, 'val_curves.png'))
    print('\n' + md + f"wrote {out}/results.md and val_curves.png")


# -----------------------------------------------------------------------------
# the run

def teacher_sources(arg, s):
    """seed -> ('train', None), ('dir', a compare.py folder with the same teacher settings) or
    ('ckpt', path), one checkpoint per teacher seed in order (a file, or a folder with best.pt)."""
    seeds = list(s['teachers'])
    if not arg:
        return {seed: ('train', None) for seed in seeds}
    parts = [os.path.abspath(p) for p in arg.split(',')]
    if len(parts) == 1 and os.path.isfile(os.path.join(parts[0], 'settings.json')):
        d = parts[0]
        with open(os.path.join(d, 'settings.json')) as f:
            theirs = json.load(f)['settings']
        ours = json.loads(json.dumps(s))
        differ = [k for k in TEACHER_KEYS if theirs.get(k) != ours.get(k)]
        if differ:
            raise ValueError(f"--teacher {d}: its teachers were made with other settings ({', '.join(differ)}); "
                             f"run with the same --quick choice, or train new teachers")
        missing = [seed for seed in seeds if not os.path.isfile(os.path.join(d, 'stages', f'teacher_t{seed}.json'))]
        if missing:
            raise ValueError(f"--teacher {d} holds no finished teacher for seed(s) {missing}; finish that run first")
        return {seed: ('dir', d) for seed in seeds}
    if len(parts) != len(seeds):
        raise ValueError(f"--teacher: give a compare.py output folder, or one checkpoint per teacher seed "
                         f"({len(seeds)}: {seeds}), comma-separated; got {len(parts)}")
    paths = [os.path.join(p, 'best.pt') if os.path.isdir(p) else p for p in parts]
    for p in paths:
        if not os.path.isfile(p):
            raise ValueError(f"--teacher: {p} does not exist")
    return {seed: ('ckpt', p) for seed, p in zip(seeds, paths)}


def guard_settings(out, s, sources):
    """OUT/settings.json records the design its stages were made with; another design there is refused."""
    path = os.path.join(out, 'settings.json')
    mine = json.loads(json.dumps(dict(settings={k: v for k, v in s.items() if k != 'dataset'},
                                      teachers_from={str(k): v for k, v in sources.items()})))
    if os.path.isfile(path):
        with open(path) as f:
            theirs = json.load(f)
        if theirs != mine:
            raise ValueError(f"{out} holds stages of another design (settings or --teacher differ); "
                             f"give another --out, or remove it")
    else:
        atomic_write(path, lambda f: json.dump(mine, f, indent=1), mode='w')


def baselines(s, test_file):
    """(uniform guess, add-one bigram of the training text) in bits per byte of the test text."""
    import numpy as np
    from tokenizer import CharTokenizer
    with open(os.path.join(s['dataset'], 'meta.pkl'), 'rb') as f:
        meta = pickle.load(f)
    with open(test_file, encoding='utf-8') as f:
        text = f.read()
    tok = CharTokenizer.from_meta(meta)
    ids = tok.encode(text)
    n_bytes = len(text.encode('utf-8')) - tok.token_bytes(ids[0])
    fresh = math.log2(tok.vocab_size) * (len(ids) - 1) / n_bytes
    train_ids = np.fromfile(os.path.join(s['dataset'], 'train.bin'), dtype=np.uint16)
    return fresh, bigram_bpb(train_ids, ids, tok.vocab_size, n_bytes)


def pool_run(jobs, work, n):
    """work(job) for every job, n at a time in order. A failure cancels the jobs not yet started
    and is raised once the running ones end (their finished stages stay cached for a rerun)."""
    progress = Progress(len(jobs))

    def one(job):
        progress.tick(work(job))

    pool = ThreadPoolExecutor(n)
    try:
        list(pool.map(one, jobs))
    finally:
        pool.shutdown(cancel_futures=True)


def experiment(ex, s, wanted, jobs):
    """Teachers, the rate grid on the first teacher, the choice, then every row on the other
    teachers at its chosen rate, the test figures and the longer check. Returns the results."""
    seeds, grid = list(s['teachers']), list(s['lr_grid'])
    first = seeds[0]

    def phase1(job):
        if job[0] == 'teacher':
            t = ex.teacher(job[1])
            return f"teacher seed {job[1]}: best val {t['best_val']:.4f}, test {t['bpb']:.4f} bits/byte"
        r = ex.student(first, job[1], job[2])
        return f"{job[1]} at {job[2]:g} on teacher {first}: best val {r['best_val']:.4f}"

    # the teachers first, so no worker waits for one; distillation's runs (which run the teacher
    # too) before the rest, so that the side-by-side workers finish together
    slow = lambda name: (0 if name.endswith('_kd') or name == 'inrank' else 1)
    print(f"teachers {seeds} and {len(wanted)} rows x {len(grid)} rates on the first, {jobs} at a time", flush=True)
    pool_run([('teacher', seed) for seed in seeds] +
             sorted((('grid', name, lr) for name in wanted for lr in grid), key=lambda j: slow(j[1])), phase1, jobs)
    table = {name: [[lr, ex.student(first, name, lr)['best_val']] for lr in grid] for name in wanted}
    chosen = {name: choose_lr(g) for name, g in table.items()}
    kron = [name for name in LONG_KRON if name in wanted]
    long_rows = ([min(kron, key=lambda n: (ex.student(first, n, chosen[n])['best_val'], n))] if kron else []) + \
        [name for name in LONG_OTHERS if name in wanted]

    def phase2(job):
        kind, seed, name = job
        long = kind == 'long'
        r = dict(ex.student(seed, name, chosen[name], long), **ex.test(seed, name, chosen[name], long))
        return f"{name}{' (long)' if long else ''} at {chosen[name]:g} on teacher {seed}: test {r['bpb']:.4f} bits/byte"

    print(f"rates chosen on validation: {json.dumps({k: f'{v:g}' for k, v in chosen.items()})}; longer check: "
          f"{', '.join(long_rows) or 'none'}", flush=True)
    pool_run([('long', first, name) for name in long_rows] +
             sorted((('run', seed, name) for seed in seeds for name in wanted), key=lambda j: (slow(j[2]), j[1])),
             phase2, jobs)

    def record(seed, name, long=False):
        lr = chosen[name]
        return dict(ex.student(seed, name, lr, long), **ex.test(seed, name, lr, long), name=name, teacher=seed, lr=lr)

    return dict(teachers=[ex.teacher(seed) for seed in seeds], rows=wanted, grid=table, chosen=chosen,
                runs=[record(seed, name) for name in wanted for seed in seeds],
                long=[record(first, name, True) for name in long_rows])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('--quick', action='store_true', help='tiny sizes, two teachers: a smoke test of every mechanism')
    p.add_argument('--out', default=None, help='default out/compare (out/compare_quick with --quick)')
    p.add_argument('--only', default='', help='comma-separated rows (default: DEFAULT_ROWS); the teachers always run')
    p.add_argument('--teacher', default='', metavar='DIR_OR_CKPT',
                   help="reuse teachers: another compare.py output folder, or one checkpoint per teacher seed, comma-separated")
    p.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1), help='runs side by side, one thread each')
    p.add_argument('--report', action='store_true',
                   help="only rewrite results.md and val_curves.png from the run's results.json in --out")
    args = p.parse_args(argv)
    s = dict(SETTINGS['quick' if args.quick else 'default'])
    if args.jobs < 1:
        raise ValueError(f"--jobs={args.jobs} must be at least 1")
    out = os.path.abspath(args.out or os.path.join(ROOT, 'out', 'compare_quick' if args.quick else 'compare'))
    if args.report:
        path = os.path.join(out, 'results.json')
        if not os.path.isfile(path):
            raise ValueError(f"--report: {path} does not exist; run the comparison first")
        with open(path) as f:
            return report(out, json.load(f))
    wanted = [v for v in args.only.split(',') if v] or list(DEFAULT_ROWS)
    table = variants(dict(n_embd=resolved(TEACHER, s['teacher'])['n_embd']))
    unknown = set(wanted) - set(table)
    if unknown:
        raise ValueError(f"--only: unknown rows {sorted(unknown)}; known: {', '.join(table)}")
    wanted = [name for name in table if name in wanted]
    command = ' '.join(['python script/compare.py'] + (argv if argv is not None else sys.argv[1:]))
    t_start = time.time()

    check_destination(out, force=True, kind='dir')
    with output_lock(out):  # a second comparison into the same folder fails at once
        compare(args, s, out, wanted, command, t_start)


def compare(args, s, out, wanted, command, t_start):
    t, st = resolved(TEACHER, s['teacher']), resolved(STUDENT, s['student'])
    s.update(n_embd=t['n_embd'], n_layer=t['n_layer'], block_size=t['block_size'], teacher_iters=t['max_iters'],
             teacher_lr=t['learning_rate'], student_iters=st['max_iters'], student_tokens=st['batch_size'] * st['block_size'])
    sources = teacher_sources(args.teacher, s)
    os.makedirs(out, exist_ok=True)
    guard_settings(out, s, sources)
    # the quick run prepares its own copy of the data: it never writes into the repository's data/
    s['dataset'] = os.path.join(out, 'data') if args.quick else os.path.join(ROOT, 'data', DATASET)
    if not all(os.path.isfile(os.path.join(s['dataset'], f)) for f in ('train.bin', 'val.bin', 'meta.pkl')):
        run_script([os.path.join('data', DATASET, 'prepare.py'), '--out_dir', s['dataset']],
                   os.path.join(out, 'prepare.log'))
    ex = Experiment(s, out, sources)
    forward_signals()  # stages run in worker threads: Ctrl-C or SIGTERM reaches them from here
    res = experiment(ex, s, wanted, args.jobs)
    fresh, bigram = baselines(s, ex.test_file)
    results = dict(command=command, settings=s, distil=DISTIL, minutes=round((time.time() - t_start) / 60, 2),
                   fresh_bpb=fresh, bigram_bpb=bigram, **res)
    text = json.dumps(results, indent=1)
    atomic_write(os.path.join(out, 'results.json'), lambda f: f.write(text), mode='w')
    report(out, json.loads(text))


if __name__ == '__main__':
    errors.run(main)
