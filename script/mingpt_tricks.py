"""
minGPT-tuned's attention tricks on tinyshakespeare characters: train and val loss of the same
model without them, with minGPT-tuned's own forms and with this project's forms, every variant
through train.py with the same data, steps and seed, and each variant's parameter count next to
the one minGPT-tuned's README reports.

    python script/mingpt_tricks.py               # config/baselines/mingpt_tricks.py: 3 x 512, 150 steps
    python script/mingpt_tricks.py --quick       # tiny model, a few steps: a smoke test
    python script/mingpt_tricks.py --max_iters 300 --out out/mingpt_tricks

The shape is minGPT-tuned's README setting (3 layers, 8 heads, 512 wide, block 128); it trained
for 150 epochs (train loss 0.609 with the tricks, 0.685 without), this runs a few hundred
thousand characters, so it shows the early part of training only. Dropout (0.1) and weight decay
(minGPT-tuned's forms as its trainer decays them) follow minGPT-tuned. The variants
(attention_tricks.py has the formulas):
  minGPT-tuned  time_weighting='full' + time_mixing='shift': its model, a free T x T weight matrix
                per head after the softmax and the fixed shift of half the channels
  README form   time_weighting='toeplitz' + 'shift': its README's parameter-saving weighting,
                Toeplitz times a factor per key
  project       time_weighting='toeplitz_query' + time_mixing='learned': Toeplitz times a factor
                per query and a learned shift, both the identity at the start (mix from 0), or
                with the mix starting at the full shift (mix from 1)
minGPT's output layer is a separate matrix, this model ties it to the embedding: its counts are
65 x 512 = 33,280 lower than minGPT's for the same shape. Writes OUT/results.json and OUT/results.md.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import errors  # noqa: E402
from outputs import check_destination  # noqa: E402
from stages import ROOT, parse_train_log, run_script  # noqa: E402

# name: (label, overrides, parameters minGPT-tuned's README reports for that model)
VARIANTS = {
    'baseline': ('no tricks (minGPT)', {}, 9_590_272),
    'mingpt_tuned': ('minGPT-tuned: full + shift', dict(time_weighting='full', time_mixing='shift'), 9_983_488),
    'readme_toeplitz': ('README: toeplitz (per key) + shift', dict(time_weighting='toeplitz', time_mixing='shift'), None),
    'project': ('project: toeplitz_query + learned (mix from 0)',
                dict(time_weighting='toeplitz_query', time_mixing='learned'), None),
    'project_mix1': ('project: toeplitz_query + learned (mix from 1)',
                     dict(time_weighting='toeplitz_query', time_mixing='learned', time_mix_init=1.0), None),
}
QUICK = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, eval_iters=2)


def markdown(rows, command, minutes):
    lines = ['| variant | params | minGPT-tuned reports | train loss init | val loss init | train loss | val loss | ms/step |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        (_, t0, v0), (_, t1, v1) = r['evals'][0], r['evals'][-1]
        reported = f"{r['reported']:,}" if r['reported'] else '-'
        lines.append(f"| {r['label']} | {r['params']:,} | {reported} | {t0:.3f} | {v0:.3f} | {t1:.3f} | {v1:.3f} | "
                     f"{r['ms_per_step']:.0f} |")
    return '\n'.join(lines) + f"\n\n`{command}` ({minutes:.1f} min)\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('--quick', action='store_true', help='tiny model and a few steps')
    p.add_argument('--max_iters', type=int, default=None, help="steps per variant (default: the config's 150)")
    p.add_argument('--out', default=os.path.join(ROOT, 'out', 'mingpt_tricks'))
    args = p.parse_args(argv)
    if args.max_iters is not None and args.max_iters < 1:
        raise ValueError(f"--max_iters {args.max_iters} must be at least 1")
    out = check_destination(args.out, kind='dir')
    os.makedirs(os.path.join(out, 'logs'), exist_ok=True)
    t_start = time.time()

    def run(name, *cmd):
        print(f"  {name}", flush=True)
        return run_script(cmd, os.path.join(out, 'logs', f'{name}.log'))

    # the quick run prepares its own copy of the data: it never writes into the repository's data/
    data = os.path.join(out, 'data') if args.quick else os.path.join(ROOT, 'data', 'shakespeare_char')
    if not all(os.path.isfile(os.path.join(data, f)) for f in ('train.bin', 'val.bin', 'meta.pkl')):
        run('prepare', os.path.join('data', 'shakespeare_char', 'prepare.py'), '--out_dir', data)
    common = dict(QUICK, max_iters=3) if args.quick else {}
    if args.max_iters:
        common.update(max_iters=args.max_iters)
    if 'max_iters' in common:
        n = common['max_iters']
        common.update(eval_interval=n, lr_decay_iters=n, warmup_iters=max(1, n // 10))
    rows = []
    for name, (label, tricks, reported) in VARIANTS.items():
        overrides = dict(common, out_dir=os.path.join(out, name), dataset=data, **tricks)
        log = parse_train_log(run(name, 'train.py', 'config/baselines/mingpt_tricks.py',
                                  *[f'--{k}={v}' for k, v in overrides.items()]))
        rows.append(dict(name=name, label=label, reported=None if args.quick else reported, **tricks, **log))
    command = 'python script/mingpt_tricks.py' + (' --quick' if args.quick else '') + \
        (f' --max_iters {args.max_iters}' if args.max_iters else '')
    minutes = (time.time() - t_start) / 60
    md = markdown(rows, command, minutes)
    with open(os.path.join(out, 'results.md'), 'w') as f:
        f.write(md)
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(dict(command=command, minutes=round(minutes, 2), rows=rows), f, indent=1)
    print('\n' + md + f"wrote {out}/results.md and results.json")


if __name__ == '__main__':
    errors.run(main)
