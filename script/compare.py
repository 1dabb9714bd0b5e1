"""
A miniature of Krony-PT's comparison of compression methods that runs on a CPU: one small dense
teacher, its MLPs compressed to the same parameter budget by every method, the same number of
training tokens for every student, one table.

    python script/compare.py                  # the default: about 30 minutes on 2 CPU cores
    python script/compare.py --quick          # tiny sizes, a few minutes: a smoke test of the pipeline
    python script/compare.py --out out/compare --only vl_norm,lowrank_svd

Text: WikiText-103's validation split shipped in data/ (data/wikitext103_valid/prepare.py: train
on its first 90%, choose checkpoints and report val loss on the last 10%); held-out test
perplexity through perplexity_eval.py on the first test_chars (SETTINGS) characters of WikiText-103's
test split (whole rows joined with "\\n\\n" as in the paper's protocol; windows of block_size).

Steps, each through the toolkit's own scripts run as subprocesses:
1. train.py trains the dense teacher from scratch (GPT-2 vocabulary, n_layer x n_embd below).
2. the students, initialised from the teacher unless said otherwise:
   - the analogue of the 81M model (`768 768 1` = A (n_embd, n_embd), B (1, 4); MLP matrices 4x
     smaller): kron_decompose.py with Van Loan (VL) plain, VL + normalisation, VL + normalisation
     + scalars, and random factors; compress.py lowrank at the rank with the same parameters;
     layer truncation to half the layers (the same parameter count, as DistilGPT2's 6 of 12
     layers match the 81M model) trained with distillation from the teacher; InRank from scratch
     (stage 1 with rank growth for half the student steps, then compress.py's truncation to the
     rank found and stage 2 for the other half; it never sees the teacher).
   - the analogue of the 96M model (`384 3072 1` = A (n_embd/2, 4 n_embd), B (2, 1)): VL vs prune.
3. every student trains for the same number of steps (tokens); val loss at initialisation is
   train.py's evaluation at step 0; the test perplexity is of the checkpoint chosen on val loss.
Writes OUT/results.json and OUT/results.md (the table, the command and the settings) and a log per
subprocess in OUT/logs/. Timings (ms per step) come from train.py's log: on a shared CPU they are
noisy, and at this size the 50257-word output layer dominates every step.
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = 'wikitext103_valid'

# model and schedule sizes; the default fits about 30 minutes on 2 shared CPU cores
SETTINGS = {
    'default': dict(n_layer=4, n_head=4, n_embd=64, block_size=128, batch_size=4, eval_iters=8,
                    teacher_iters=150, student_iters=40, teacher_lr=3e-3, student_lr=1e-3,
                    test_chars=60_000, inrank_init_modes=2, inrank_buffer_modes=8),
    'quick': dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, eval_iters=2,
                  teacher_iters=6, student_iters=4, teacher_lr=3e-3, student_lr=1e-3,
                  test_chars=4_000, inrank_init_modes=2, inrank_buffer_modes=4),
}

EVAL_RE = re.compile(r'^eval (\d+) \| train ([\d.]+) \| val ([\d.]+)', re.M)
ITER_RE = re.compile(r'^iter (\d+) \| .*?\| ([\d.]+) ms/iter', re.M)
PARAMS_RE = re.compile(r'^model: ([\d,]+) parameters', re.M)
INRANK_RE = re.compile(r'^inrank (\d+) \| (.*)$', re.M)


def parse_train_log(text):
    """evals [(iter, train, val)], ms per step (median, first step excluded), parameters, rank changes."""
    evals = [(int(i), float(t), float(v)) for i, t, v in EVAL_RE.findall(text)]
    ms = [float(m) for i, m in ITER_RE.findall(text) if int(i) > 0]
    params = PARAMS_RE.search(text)
    return dict(evals=evals, ms_per_step=statistics.median(ms) if ms else None,
                params=int(params.group(1).replace(',', '')) if params else None,
                rank_changes=INRANK_RE.findall(text))


def matched_rank(n_embd, kron_params):
    """Rank whose U (n, r) + V (r, 4n) has the parameters of one Kronecker matrix."""
    return max(1, round(kron_params / (n_embd + 4 * n_embd)))


def inrank_schedule(student_iters):
    """InRank's warmup 200 / gap 25 scaled to a stage 1 of half the student steps."""
    stage1 = max(2, student_iters // 2)
    return dict(stage1=stage1, warmup=max(1, stage1 // 4), gap=max(1, stage1 // 10))


def test_slice(n_chars, path):
    """The first rows of WikiText-103's test split, whole rows up to n_chars, joined as the protocol joins them."""
    rows = []
    with open(os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.test.tokens'), encoding='utf-8') as f:
        for row in f:
            rows.append(row if row.strip() else '')
            if sum(map(len, rows)) >= n_chars:
                break
    with open(path, 'w', encoding='utf-8') as f:
        f.write("\n\n".join(rows))


class Runner:
    """Runs the toolkit's scripts, one log file per call, and stops at the first failure."""

    def __init__(self, out):
        self.out = out
        os.makedirs(os.path.join(out, 'logs'), exist_ok=True)

    def __call__(self, name, script, *args):
        cmd = [sys.executable, script, *map(str, args)]
        log = os.path.join(self.out, 'logs', f'{name}.log')
        t0 = time.time()
        with open(log, 'w') as f:  # written as it runs, so a long run can be followed with tail -f
            f.write(' '.join(cmd) + '\n')
            f.flush()
            code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
        with open(log) as f:
            text = f.read()
        if code:
            tail = ' / '.join(text.strip().splitlines()[-3:])
            raise ValueError(f"{name}: {' '.join(cmd[1:3])} failed (exit {code}): {tail}; see {log}")
        print(f"  {name:<22} {script:<20} {time.time() - t0:6.1f} s", flush=True)
        return text


def train_args(s, out_dir, iters, lr, init_from='scratch', **extra):
    """train.py overrides shared by every run: same data, batch, evaluation batches and seed."""
    args = dict(out_dir=out_dir, init_from=init_from, dataset=DATASET, batch_size=s['batch_size'],
                gradient_accumulation_steps=1, block_size=s['block_size'], eval_iters=s['eval_iters'],
                eval_interval=iters, log_interval=1, max_iters=iters, learning_rate=lr,
                min_lr=lr / 10, warmup_iters=max(1, iters // 10), lr_decay_iters=iters,
                n_layer=s['n_layer'], n_head=s['n_head'], n_embd=s['n_embd'])
    args.update(extra)
    return [f'--{k}={v}' for k, v in args.items()]


def variants(s, teacher):
    """name -> (description, [(script, args) that make the init checkpoint], train overrides)."""
    n = s['n_embd']
    kron81, kron96 = (n, n, 1), (n // 2, 4 * n, 1)
    rank = matched_rank(n, n * n + 4)

    def kron(dims, *flags):
        return ('kron_decompose.py', [*dims, *flags, '--from', teacher])

    return {
        'vl': ('81M-like VL', [kron(kron81, '--init', 'vl', '--no-normalize')], {}),
        'vl_norm': ('81M-like VL + normalisation', [kron(kron81, '--init', 'vl')], {}),
        'vl_norm_scalers': ('81M-like VL + norm. + scalars', [kron(kron81, '--init', 'vl', '--scalers')], {}),
        'random': ('81M-like random Kronecker', [kron(kron81, '--init', 'random')], {}),
        'lowrank_svd': (f'low-rank SVD, rank {rank}', [('compress.py', ['lowrank', rank, '--from', teacher])], {}),
        'truncate_kd': ('half the layers + distillation', [('compress.py', ['truncate', '--from', teacher])],
                        dict(kd_teacher=teacher)),
        'inrank': ('InRank from scratch', None, {}),
        'vl96': ('96M-like VL', [kron(kron96, '--init', 'vl', '--no-normalize')], {}),
        'prune96': ('96M-like prune', [kron(kron96, '--init', 'prune', '--no-normalize')], {}),
    }


def run_inrank(run, s, out, ckpt_dir):
    """Stage 1 from scratch with rank growth, truncation to the rank found, stage 2 at that rank."""
    sch = inrank_schedule(s['student_iters'])
    stage1 = os.path.join(out, 'inrank_stage1')
    log1 = run('inrank_stage1', 'train.py', *train_args(
        s, stage1, sch['stage1'], s['teacher_lr'], mlp='lowrank', lowrank_rank=0, inrank=True,
        inrank_init_modes=s['inrank_init_modes'], inrank_buffer_modes=s['inrank_buffer_modes'],
        inrank_warmup_iter=sch['warmup'], inrank_gap_iter=sch['gap']))
    init = os.path.join(ckpt_dir, 'inrank_stage2_init.pt')
    cut = run('inrank_truncate', 'compress.py', 'lowrank', 'found', '--from', os.path.join(stage1, 'ckpt.pt'),
              '--out', init)
    rank = int(re.search(r'keeps the largest, (\d+)', cut).group(1))
    stage2 = os.path.join(out, 'inrank_stage2')
    log2 = run('inrank_stage2', 'train.py', *train_args(s, stage2, s['student_iters'] - sch['stage1'],
                                                         s['teacher_lr'], init_from=init))
    p1, p2 = parse_train_log(log1), parse_train_log(log2)
    return dict(evals=p1['evals'][:1] + p2['evals'], ms_per_step=p2['ms_per_step'], params=p2['params'],
                rank=rank, rank_changes=p1['rank_changes'], stage1_final_val=p1['evals'][-1][2],
                best=os.path.join(stage2, 'best.pt'))


def mlp_matrix_params(path):
    """Parameters of a checkpoint's MLP weight matrices (factors, scalars; biases excluded)."""
    sys.path.insert(0, ROOT)
    from checkpoint import load_model
    return load_model(path)[0].mlp_params()


def markdown(rows, s, command, minutes):
    head = ('| variant | params (paper count) | MLP matrices | val loss init | val ppl init | '
            'val loss trained | val ppl trained | test ppl (wt103 slice) | ms/step |')
    lines = [head, '|' + '---|' * 9]
    for r in rows:
        def f(x, fmt):
            return format(x, fmt) if x is not None else '-'
        lines.append(f"| {r['label']} | {r['params']:,} | {r['mlp_params']:,} | {f(r['val_init'], '.3f')} | "
                     f"{f(r['val_ppl_init'], '.1f')} | {f(r['val_final'], '.3f')} | {f(r['val_ppl_final'], '.1f')} | "
                     f"{f(r['test_ppl'], '.1f')} | {f(r['ms_per_step'], '.0f')} |")
    notes = [f"`{command}` ({minutes:.1f} min). Teacher: {s['n_layer']} layers, n_embd {s['n_embd']}, "
             f"{s['n_head']} heads, block {s['block_size']}, GPT-2 vocabulary, {s['teacher_iters']} steps of "
             f"{s['batch_size'] * s['block_size']:,} tokens at lr {s['teacher_lr']:g}; every student "
             f"{s['student_iters']} steps ({s['student_iters'] * s['batch_size'] * s['block_size']:,} tokens) "
             f"at lr {s['student_lr']:g} (InRank: lr {s['teacher_lr']:g}, both stages).",
             f"Val loss: train.py's mean over the same {s['eval_iters'] * s['batch_size']} val sequences for every "
             f"row, at step 0 (init) and at the last step. Test ppl: the checkpoint chosen on val loss, "
             f"perplexity_eval.py's default protocol (windows of {s['block_size']} tokens) on the first "
             f"{s['test_chars']:,} characters of WikiText-103 test. ms/step: median of train.py's log on a "
             f"shared CPU (noisy)."]
    return '\n'.join(lines + [''] + [' '.join(notes)]) + '\n'



def write_results(out, md, payload):
    """out/results.md (the table) and out/results.json (everything), and the table on stdout."""
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(payload, f, indent=2)
    with open(os.path.join(out, 'results.md'), 'w') as f:
        f.write(md)
    print('\n' + md + f"wrote {os.path.join(out, 'results.md')} and results.json")

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('--quick', action='store_true', help='tiny sizes: a smoke test of the pipeline')
    p.add_argument('--out', default=os.path.join(ROOT, 'out', 'compare'))
    p.add_argument('--only', default='', help='comma-separated variants to run (the teacher always runs)')
    args = p.parse_args(argv)
    s = SETTINGS['quick' if args.quick else 'default']
    out = os.path.abspath(args.out)
    ckpt_dir = os.path.join(out, 'init')
    os.makedirs(ckpt_dir, exist_ok=True)
    run = Runner(out)
    t_start = time.time()
    command = 'python script/compare.py' + (' --quick' if args.quick else '') + (f' --only {args.only}' if args.only else '')

    if not all(os.path.isfile(os.path.join(ROOT, 'data', DATASET, f'{x}.bin')) for x in ('train', 'val')):
        run('prepare', os.path.join('data', DATASET, 'prepare.py'))
    test_file = os.path.join(out, 'wt103_test_slice.txt')
    test_slice(s['test_chars'], test_file)

    def test_ppl(name, model):
        js = os.path.join(out, 'ppl', f'{name}.json')
        run(f'ppl_{name}', 'perplexity_eval.py', model, '--text_file', test_file, '--json', js)
        with open(js) as f:
            return json.load(f)['results'][os.path.basename(test_file)]['ppl']

    print(f"teacher: {s['n_layer']} layers, n_embd {s['n_embd']}, {s['teacher_iters']} steps", flush=True)
    teacher_dir = os.path.join(out, 'teacher')
    teacher = os.path.join(teacher_dir, 'best.pt')
    wanted = [v for v in args.only.split(',') if v]
    table = variants(s, teacher)
    unknown = set(wanted) - set(table)
    if unknown:
        raise ValueError(f"--only: unknown variants {sorted(unknown)}; known: {', '.join(table)}")
    tlog = parse_train_log(run('teacher', 'train.py', *train_args(
        s, teacher_dir, s['teacher_iters'], s['teacher_lr'], eval_interval=s['student_iters'])))
    rows = [dict(name='teacher', label='dense teacher', params=tlog['params'], evals=tlog['evals'],
                 ms_per_step=tlog['ms_per_step'], test_ppl=test_ppl('teacher', teacher),
                 mlp_params=mlp_matrix_params(teacher))]
    at_budget = [e for e in tlog['evals'] if e[0] == s['student_iters']]
    if at_budget:  # the teacher's own run after as many tokens as a student gets: a from-scratch reference
        rows.append(dict(name='teacher_at_budget', label=f"dense from scratch, {s['student_iters']} steps "
                         f"(teacher's run)", params=tlog['params'], evals=tlog['evals'][:1] + at_budget,
                         ms_per_step=tlog['ms_per_step'], test_ppl=None, mlp_params=rows[0]['mlp_params']))
    for name, (label, init_steps, extra) in table.items():
        if wanted and name not in wanted:
            continue
        print(f"{name}: {label}", flush=True)
        if init_steps is None:
            res = run_inrank(run, s, out, ckpt_dir)
            label = f"{label} (rank found {res['rank']})"
        else:
            init = os.path.join(ckpt_dir, f'{name}.pt')
            for script, script_args in init_steps:
                run(f'init_{name}', script, *script_args, '--out', init)
            res = parse_train_log(run(name, 'train.py', *train_args(
                s, os.path.join(out, name), s['student_iters'], s['student_lr'], init_from=init, **extra)))
            res['best'] = os.path.join(out, name, 'best.pt')
        best = res.pop('best')
        rows.append(dict(name=name, label=label, test_ppl=test_ppl(name, best), mlp_params=mlp_matrix_params(best),
                         **res))

    for r in rows:
        (_, _, v0), (_, _, v1) = r['evals'][0], r['evals'][-1]
        r.update(val_init=v0, val_ppl_init=math.exp(v0), val_final=v1, val_ppl_final=math.exp(v1))
    minutes = (time.time() - t_start) / 60
    md = markdown(rows, s, command, minutes)
    write_results(out, md, dict(command=command, settings=s, minutes=round(minutes, 2), rows=rows))


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
