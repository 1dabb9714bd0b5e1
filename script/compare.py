"""
Krony-PT's claims tested in a CPU miniature where the MLPs matter: one dense character-level
teacher whose MLP matrices hold 62% of its parameters, compressed by every method, each student
trained on the same tokens over several seeds, every figure on held-out text.

    python script/compare.py                 # the default run (SETTINGS['default'], 3 seeds)
    python script/compare.py --quick         # tiny sizes, one seed: a smoke test of every row
    python script/compare.py --only vl_norm,random --seeds 0 --out out/compare_try

Regime: WikiText-103's validation split as characters (data/wikitext103_valid_char: train on its
first 90%, choose checkpoints on the last 10%), the test split held out: test loss, perplexity
and bits per byte come from perplexity_eval.py on its first test_chars characters. The teacher is
GPT-2's architecture at 6 layers x 96 wide; its own vocabulary of 143 characters keeps the
embedding small, so that, as in GPT-2 small, the MLPs are most of the model.

Every stage runs the toolkit's own scripts as subprocesses (logs in OUT/logs/), `jobs` at a time
with one thread each: train.py config/mini_teacher.py for the teacher; kron_decompose.py /
compress.py for each student's initialisation; train.py config/mini_student.py for every student
and seed (the same steps and tokens for all, an eighth of the teacher's; the seed sets the data
order and any random init); then perplexity_eval.py of the checkpoint with the lowest validation
loss. The configs and SETTINGS were fixed before any student was trained and are not tuned to a
result; there is no learning-rate sweep: every student trains with the same schedule, and the
two that start from scratch (InRank, dense) with the teacher's learning rate.

Writes OUT/results.json (every run), OUT/results.md (the variant table, the claims table, the
settings) and OUT/val_curves.png (validation loss per variant: mean over seeds, band min-max).
"""

import argparse
import json
import math
import os
import pickle
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
from files import atomic_write, check_destination  # noqa: E402
from stages import ROOT, Progress, clock, parse_train_log, run_script, wikitext_test_head  # noqa: E402

DATASET = 'wikitext103_valid_char'

TEACHER, STUDENT = 'config/mini_teacher.py', 'config/mini_student.py'
# fixed before the first run: the seeds, the test text, InRank's ranks; the models and schedules
# are the two config files'. --quick shrinks everything to a smoke test.
SETTINGS = {
    'default': dict(seeds=(0, 1, 2), test_chars=200_000, inrank_init_modes=2, inrank_buffer_modes=12,
                    teacher=[], student=[]),
    'quick': dict(seeds=(0,), test_chars=3_000, inrank_init_modes=2, inrank_buffer_modes=2,
                  teacher=['--n_layer=2', '--n_head=2', '--n_embd=24', '--block_size=32', '--batch_size=4',
                           '--max_iters=12', '--lr_decay_iters=12', '--warmup_iters=2', '--eval_interval=6',
                           '--eval_iters=2', '--log_interval=3'],
                  student=['--n_layer=2', '--n_head=2', '--n_embd=24', '--block_size=32', '--batch_size=4',
                           '--max_iters=4', '--lr_decay_iters=4', '--warmup_iters=1', '--eval_interval=2',
                           '--eval_iters=2', '--log_interval=1']),
}


def resolved(config, overrides):
    """The train.py config that a config file plus overrides give (train.py's own reading)."""
    import train
    from configurator import load_config
    return load_config(train.DEFAULTS, [os.path.join(ROOT, config), *overrides])


# DistilGPT2's public training command: the loss weights and the frozen position embeddings
DISTIL = dict(kd_alpha_ce=5.0, kd_alpha_clm=2.0, kd_alpha_cos=1.0, kd_temperature=2.0, freeze_pos_emb=True)


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
    "80M-2" (n/3, 4n/3) x (3, 3) with 1, 2 or 4 factors."""
    n = s['n_embd']
    k81, k96, k80 = (n, n), (n // 2, 4 * n), (n // 3, 4 * n // 3)
    rank = matched_rank(n, n * n + 4)

    def kron(dims, factors, *flags):
        return [('kron_decompose.py', [*dims, factors, *flags])]

    return {
        'vl': ('81M-like VL', kron(k81, 1, '--no-normalize'), {}),
        'vl_norm': ('81M-like VL + normalisation', kron(k81, 1), {}),
        'vl_norm_scalers': ('81M-like VL + norm. + scalars', kron(k81, 1, '--scalers'), {}),
        'random': ('81M-like random factors', kron(k81, 1, '--init', 'random'), {}),
        'vl96': ('96M-like VL', kron(k96, 1, '--no-normalize'), {}),
        'vl96_norm': ('96M-like VL + normalisation', kron(k96, 1), {}),
        'prune96': ('96M-like prune', kron(k96, 1, '--init', 'prune', '--no-normalize'), {}),
        'prune96_norm': ('96M-like prune + normalisation', kron(k96, 1, '--init', 'prune'), {}),
        'f1': ('80M-2-like, 1 factor (+ scalars)', kron(k80, 1, '--scalers'), {}),
        'f2': ('80M-2-like, 2 factors (+ scalars)', kron(k80, 2, '--scalers'), {}),
        'f4': ('80M-2-like, 4 factors (+ scalars)', kron(k80, 4, '--scalers'), {}),
        'lowrank': (f'low-rank SVD, rank {rank}', [('compress.py', ['lowrank', rank])], {}),
        'truncate_kd': ('half the layers + distillation', [('compress.py', ['truncate'])], dict(DISTIL)),
        'vl_norm_kd': ('81M-like VL + norm. + distillation', kron(k81, 1), dict(DISTIL)),
        'inrank': ('InRank from scratch', None, {}),
        'scratch': ('dense from scratch', None, {}),
    }


# (claim, [(a, b)] pairs of variants, what it predicts for each pair): 'better' that a beats b,
# 'equal' that a and b are within noise; the claims as the papers make them
CLAIMS = [
    ('VL initialisation beats random initialisation', [('vl_norm', 'random'), ('vl', 'random')], 'better'),
    ('normalisation improves VL', [('vl_norm', 'vl'), ('vl96_norm', 'vl96')], 'better'),
    ('learnable scalars improve VL + normalisation', [('vl_norm_scalers', 'vl_norm')], 'better'),
    ('prune beats VL at the 96M shape', [('prune96', 'vl96'), ('prune96_norm', 'vl96_norm')], 'better'),
    ('more factors are better (2 vs 1, 4 vs 2)', [('f2', 'f1'), ('f4', 'f2')], 'better'),
    ('Kronecker beats low-rank SVD at equal size', [('vl_norm', 'lowrank')], 'better'),
    ('Kronecker beats truncation + distillation (DistilGPT2) at equal size',
     [('vl_norm', 'truncate_kd'), ('vl_norm_kd', 'truncate_kd')], 'better'),
    ('distillation gives the Kronecker student no gain', [('vl_norm_kd', 'vl_norm')], 'equal'),
    ('initialising from the teacher beats training from scratch',
     [('vl_norm', 'scratch'), ('vl_norm', 'inrank')], 'better'),
]


def train_args(s, who, out_dir, seed, **extra):
    """train.py's command line for the teacher or a student: its config file, the setting's
    overrides, then this run's."""
    config, overrides = (TEACHER, s['teacher']) if who == 'teacher' else (STUDENT, s['student'])
    args = dict(out_dir=out_dir, dataset=s['dataset'], seed=seed, **extra)
    return ['train.py', config, *overrides, *[f'--{k}={v}' for k, v in args.items()]]


class Experiment:

    def __init__(self, s, out, jobs):
        self.s, self.out, self.jobs = s, out, jobs
        for d in ('logs', 'init', 'runs', 'ppl'):
            os.makedirs(os.path.join(out, d), exist_ok=True)
        self.test_file = wikitext_test_head(s['test_chars'], os.path.join(out, 'test_text.txt'))
        self.teacher = os.path.join(out, 'teacher', 'best.pt')

    def scratch_lr(self):
        """The schedule of the runs that start from scratch: the teacher's peak and floor."""
        return dict(learning_rate=self.s['teacher_lr'], min_lr=self.s['teacher_lr'] / 10)

    def run(self, name, args, threads=1):
        return run_script(args, os.path.join(self.out, 'logs', f'{name}.log'), threads=threads)

    def test_eval(self, name, model):
        """perplexity_eval.py on the test text: dict(ppl, bpb, nll)."""
        js = os.path.join(self.out, 'ppl', f'{name}.json')
        self.run(f'ppl_{name}', ['perplexity_eval.py', model, '--text_file', self.test_file, '--json', js,
                                 '--batch_size', 4])
        with open(js) as f:
            res = next(iter(json.load(f)['results'].values()))
        return dict(ppl=res['ppl'], bpb=res['bpb'], test_nll=res['nll_sum'] / res['n_scored'])

    def train_teacher(self):
        s = self.s
        log = self.run('teacher', train_args(s, 'teacher', os.path.dirname(self.teacher), 0),
                       threads=self.jobs)  # the teacher alone uses every core
        return dict(parse_train_log(log), **self.test_eval('teacher', self.teacher))

    def make_init(self, name, steps):
        path = os.path.join(self.out, 'init', f'{name}.pt')
        for script, args in steps:
            self.run(f'init_{name}', [script, *args, '--from', self.teacher, '--out', path, '--force'])
        return path

    def train_student(self, name, init, extra, seed):
        s = self.s
        out_dir = os.path.join(self.out, 'runs', f'{name}_s{seed}')
        if name == 'inrank':
            res = self.train_inrank(out_dir, seed)
        else:
            # a random init draws its factors from the seed; the others start from the same init
            if name == 'random':
                init = self.make_init(f'random_s{seed}', [('kron_decompose.py', [*self.k81, 1, '--init', 'random',
                                                                                '--seed', seed])])
            if init is None:  # from scratch: the teacher's learning rate, the students' steps
                extra = dict(extra, init_from='scratch', **self.scratch_lr())
            else:
                extra = dict(extra, init_from=init)
            if extra.get('kd_alpha_ce'):
                extra['kd_teacher'] = self.teacher
            log = self.run(f'{name}_s{seed}', train_args(s, 'student', out_dir, seed, **extra))
            res = parse_train_log(log)
        res.update(self.test_eval(f'{name}_s{seed}', os.path.join(out_dir, 'best.pt')))
        res['mlp_params'] = mlp_params(os.path.join(out_dir, 'best.pt'))
        return res

    def train_inrank(self, out_dir, seed):
        """InRank as its code runs: stage 1 from scratch (kaiming-uniform factors) with rank growth,
        truncation to the rank found, stage 2 at that rank continuing stage 1's run (step count,
        learning-rate schedule, Adam moments sliced to the kept ranks)."""
        s, sch, lr = self.s, inrank_schedule(self.s['student_iters']), self.scratch_lr()
        stage1 = out_dir + '_stage1'
        log1 = self.run(f'inrank_s{seed}_stage1', train_args(
            s, 'student', stage1, seed, init_from='scratch', max_iters=sch['stage1'], **lr,
            mlp='lowrank', lowrank_rank=0, lowrank_init='inrank', inrank=True, inrank_unit='step',
            inrank_init_modes=s['inrank_init_modes'], inrank_buffer_modes=s['inrank_buffer_modes'],
            inrank_warmup_iter=sch['warmup'], inrank_gap_iter=sch['gap']))
        cut = self.run(f'inrank_s{seed}_truncate', ['compress.py', 'lowrank', 'found', '--from',
                                                    os.path.join(stage1, 'ckpt.pt'), '--resume_dir', out_dir, '--force'])
        rank = int(re.search(r'keeps the largest, (\d+)', cut).group(1))
        log2 = self.run(f'inrank_s{seed}', train_args(s, 'student', out_dir, seed, init_from='resume', **lr))
        p1, p2 = parse_train_log(log1), parse_train_log(log2)
        return dict(evals=p1['evals'] + p2['evals'], ms_per_step=p2['ms_per_step'], params=p2['params'],
                    rank=rank, rank_changes=p1['rank_changes'])


def mlp_params(path):
    """Parameters of a checkpoint's MLP weight matrices (factors, scalars; biases excluded)."""
    from checkpoint import load_model
    return load_model(path)[0].mlp_params()


# -----------------------------------------------------------------------------
# statistics and tables

def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def gap_kept(bpb, teacher_bpb, fresh_bpb):
    """Share of the fresh-model -> teacher gap that a student keeps: 1 is the teacher, 0 an
    untrained model predicting every token with probability 1/vocab."""
    return (fresh_bpb - bpb) / (fresh_bpb - teacher_bpb)


def compare_pair(runs, better, worse):
    """Paired by seed (the same data order): differences of test bits per byte (worse - better,
    positive when `better` is better). The difference counts when its mean is more than twice its
    standard error; otherwise it is within noise."""
    a = {r['seed']: r['bpb'] for r in runs if r['name'] == better}
    b = {r['seed']: r['bpb'] for r in runs if r['name'] == worse}
    diffs = [b[k] - a[k] for k in sorted(a) if k in b]
    if not diffs:
        return None
    m = statistics.mean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float('inf')
    verdict = 'within noise' if abs(m) <= 2 * se else ('holds' if m > 0 else 'reversed')
    return dict(better=better, worse=worse, diff=m, se=se, n=len(diffs), verdict=verdict)


def claim_verdict(c, prediction):
    """What a pair's comparison says of a claim that predicts 'better' (the first beats the second)
    or 'equal' (no difference beyond noise)."""
    if prediction == 'better':
        return c['verdict']
    return 'holds' if c['verdict'] == 'within noise' else f"does not hold: {c['better'] if c['diff'] > 0 else c['worse']} is better"


def markdown(s, table, teacher, runs, fresh_bpb, command, minutes):
    lines = [f"`{command}`: {minutes:.1f} min; {len(s['seeds'])} seed(s); test text: the first "
             f"{s['test_chars']:,} characters of WikiText-103 test (perplexity_eval.py, window protocol, "
             f"{s['block_size']}-character windows).", '',
             '| variant | params | MLP matrices | val loss at init | best val loss | test bits/byte | '
             'test ppl (per char) | gap kept |', '|' + '---|' * 8,
             f"| dense teacher ({s['teacher_iters']} steps) | {teacher['params']:,} | {teacher['mlp_params']:,} | "
             f"{teacher['evals'][0][2]:.3f} | {min(e[2] for e in teacher['evals']):.3f} | {teacher['bpb']:.4f} | "
             f"{teacher['ppl']:.3f} | 100% |"]

    def pm(values, fmt):
        m, sd = mean_sd(values)
        return '-' if m is None else f"{m:{fmt}} ± {sd:{fmt}}"

    for name, (label, _, _) in table.items():
        rs = [r for r in runs if r['name'] == name]
        if not rs:
            continue
        extra = f" (rank found {', '.join(str(r['rank']) for r in rs)})" if name == 'inrank' else ''
        lines.append(f"| {label}{extra} | {rs[0]['params']:,} | {rs[0]['mlp_params']:,} | "
                     f"{pm([r['evals'][0][2] for r in rs], '.3f')} | {pm([min(e[2] for e in r['evals']) for r in rs], '.3f')} | "
                     f"{pm([r['bpb'] for r in rs], '.4f')} | {pm([r['ppl'] for r in rs], '.3f')} | "
                     f"{pm([100 * gap_kept(r['bpb'], teacher['bpb'], fresh_bpb) for r in rs], '.1f')}% |")
    lines += ['', '| claim | comparison (paired by seed) | difference in test bits/byte | verdict |',
              '|---|---|---|---|']
    for claim, pairs, prediction in CLAIMS:
        for a, b in pairs:
            c = compare_pair(runs, a, b)
            if c:
                said = f"{a} better than {b}" if prediction == 'better' else f"{a} equal to {b}"
                lines.append(f"| {claim} | {said} | {c['diff']:+.4f} ± {c['se']:.4f} "
                             f"(n={c['n']}) | {claim_verdict(c, prediction)} |")
    shown = {k: v for k, v in s.items() if k != 'dataset'}
    lines += ['', f"Teacher `{TEACHER}`, students `{STUDENT}` (the 'student_tokens' characters per step; "
              f"from scratch with the teacher's learning rate); settings {json.dumps(dict(shown, seeds=list(s['seeds'])))}; "
              f"distillation {json.dumps(DISTIL)}.",
              "val loss: train.py's mean over the same validation batches for every run (nats per character); "
              "the best one chooses the checkpoint evaluated on the test text. ± is the standard deviation "
              "over seeds. Gap kept: (fresh - student) / (fresh - teacher) in test bits per byte, with "
              f"the fresh model at ln(vocab) per character ({fresh_bpb:.4f} bits/byte here). A comparison's "
              "difference is the second's bits/byte minus the first's (positive: the first is better), ± its "
              "standard error over seeds; it counts when larger than twice that, else it is within noise."]
    return '\n'.join(lines) + '\n'


def plot_curves(table, teacher, runs, path):
    """Validation loss against training step per variant: mean over seeds, band min-max."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = [('81M-like inits', ['vl', 'vl_norm', 'vl_norm_scalers', 'random']),
              ('96M-like: prune vs VL', ['vl96', 'vl96_norm', 'prune96', 'prune96_norm']),
              ('factors', ['f1', 'f2', 'f4', 'vl_norm']),
              ('other methods', ['vl_norm', 'lowrank', 'truncate_kd', 'vl_norm_kd', 'inrank', 'scratch'])]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey=True)
    best_teacher = min(e[2] for e in teacher['evals'])
    lowest = min([best_teacher] + [e[2] for r in runs for e in r['evals']])
    for ax, (title, names) in zip(axes.flat, groups):
        for name in names:
            rs = [r for r in runs if r['name'] == name]
            if not rs:
                continue
            steps = [e[0] for e in rs[0]['evals']]
            vals = [[r['evals'][i][2] for r in rs] for i in range(len(steps))]
            ax.plot(steps, [statistics.mean(v) for v in vals], label=table[name][0])
            ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], alpha=0.2)
        ax.axhline(best_teacher, color='k', ls='--', lw=1, label='teacher (best)')
        ax.set_title(title)
        ax.set_xlabel('student step')
        ax.set_ylim(lowest - 0.05, best_teacher + 1.0)
        ax.legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel('validation loss (nats per character)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('--quick', action='store_true', help='tiny sizes and one seed: a smoke test of every row')
    p.add_argument('--out', default=None, help='default out/compare (out/compare_quick with --quick)')
    p.add_argument('--only', default='', help='comma-separated variants (the teacher always runs)')
    p.add_argument('--seeds', default='', help='comma-separated seeds (default: the setting\'s)')
    p.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1), help='runs side by side, one thread each')
    p.add_argument('--report', action='store_true',
                   help="only rewrite results.md and val_curves.png from the run's results.json in --out")
    args = p.parse_args(argv)
    s = dict(SETTINGS['quick' if args.quick else 'default'])
    if args.seeds:
        s['seeds'] = tuple(int(x) for x in args.seeds.split(','))
    if args.jobs < 1:
        raise ValueError(f"--jobs={args.jobs} must be at least 1")
    wanted = [v for v in args.only.split(',') if v]
    table = variants(dict(n_embd=resolved(TEACHER, s['teacher'])['n_embd']))
    wanted = wanted or list(table)
    unknown = set(wanted) - set(table)
    if unknown:
        raise ValueError(f"--only: unknown variants {sorted(unknown)}; known: {', '.join(table)}")
    out = os.path.abspath(args.out or os.path.join(ROOT, 'out', 'compare_quick' if args.quick else 'compare'))
    command = ' '.join(['python script/compare.py'] + (argv if argv is not None else sys.argv[1:]))
    t_start = time.time()
    if args.report:
        path = os.path.join(out, 'results.json')
        if not os.path.isfile(path):
            raise ValueError(f"--report: {path} does not exist; run the comparison first")
        with open(path) as f:
            return report(out, json.load(f))

    check_destination(out, force=True, kind='dir')
    os.makedirs(out, exist_ok=True)
    # the quick run prepares its own copy of the data: it never writes into the repository's data/
    s['dataset'] = os.path.join(out, 'data') if args.quick else os.path.join(ROOT, 'data', DATASET)
    if not all(os.path.isfile(os.path.join(s['dataset'], f)) for f in ('train.bin', 'val.bin', 'meta.pkl')):
        run_script([os.path.join('data', DATASET, 'prepare.py'), '--out_dir', s['dataset']],
                   os.path.join(out, 'prepare.log'))
    t, st = resolved(TEACHER, s['teacher']), resolved(STUDENT, s['student'])
    s.update(n_embd=t['n_embd'], n_layer=t['n_layer'], block_size=t['block_size'], teacher_iters=t['max_iters'],
             teacher_lr=t['learning_rate'], student_iters=st['max_iters'], student_tokens=st['batch_size'] * st['block_size'])
    ex = Experiment(s, out, args.jobs)
    n = s['n_embd']
    ex.k81 = (n, n)
    print(f"teacher: {TEACHER}, {s['n_layer']} layers x {n}, {s['teacher_iters']} steps (log: "
          f"{out}/logs/teacher.log)", flush=True)
    teacher = ex.train_teacher()
    teacher['mlp_params'] = mlp_params(ex.teacher)
    print(f"  teacher: best val loss {min(e[2] for e in teacher['evals']):.4f}, test {teacher['bpb']:.4f} "
          f"bits/byte, {clock(time.time() - t_start)}", flush=True)

    inits = {name: ex.make_init(name, steps) for name in wanted
             for label, steps, _ in [table[name]] if steps and name != 'random'}
    # the slowest runs first (distillation runs the teacher too; InRank has two stages), so that
    # the side-by-side workers finish together
    slow = {'truncate_kd': 0, 'vl_norm_kd': 0, 'inrank': 1}
    jobs = sorted(((name, seed) for seed in s['seeds'] for name in wanted), key=lambda j: (slow.get(j[0], 2), j[1]))
    progress = Progress(len(jobs))

    def job(name_seed):
        name, seed = name_seed
        res = ex.train_student(name, inits.get(name), table[name][2], seed)
        progress.tick(f"{name} seed {seed}: test {res['bpb']:.4f} bits/byte")
        return dict(res, name=name, seed=seed)

    print(f"students: {len(wanted)} variants x {len(s['seeds'])} seed(s), {s['student_iters']} steps each, "
          f"{args.jobs} at a time", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(job, jobs))

    with open(os.path.join(s['dataset'], 'meta.pkl'), 'rb') as f:
        vocab = pickle.load(f)['vocab_size']
    with open(ex.test_file, encoding='utf-8') as f:
        text = f.read()
    fresh_bpb = math.log2(vocab) * len(text) / len(text.encode('utf-8'))
    minutes = (time.time() - t_start) / 60
    results = dict(command=command, settings=dict(s, seeds=list(s['seeds'])), distil=DISTIL, minutes=round(minutes, 2),
                   fresh_bpb=fresh_bpb, teacher=teacher, runs=runs)
    atomic_write(os.path.join(out, 'results.json'), lambda f: json.dump(results, f, indent=1), mode='w')
    report(out, results)


def report(out, results):
    """results.md and val_curves.png from the runs in results.json."""
    s, table = results['settings'], variants(results['settings'])
    md = markdown(s, table, results['teacher'], results['runs'], results['fresh_bpb'], results['command'],
                  results['minutes'])
    atomic_write(os.path.join(out, 'results.md'), lambda f: f.write(md), mode='w')
    plot_curves(table, results['teacher'], results['runs'], os.path.join(out, 'val_curves.png'))
    print('\n' + md + f"wrote {out}/results.md, results.json and val_curves.png")


if __name__ == '__main__':
    cli.run(main)
