"""
minGPT-tuned's attention tricks on tinyshakespeare characters: train and val loss of the same
model with and without time-weighting and time-mixing, every variant through train.py with the
same data, steps and seed.

    python script/mingpt_tricks.py               # config/mingpt_tricks.py: 3 x 512, block 128, 150 steps
    python script/mingpt_tricks.py --quick       # tiny model, a few steps: a smoke test
    python script/mingpt_tricks.py --max_iters 300 --out out/mingpt_tricks

The shape is minGPT-tuned's README setting (3 layers, 8 heads, 512 wide, block 128); it trained
for 150 epochs (train loss 0.609 with the tricks, 0.685 without), this runs a few hundred
thousand characters, so it shows the early part of training only. Time-mixing starts at
minGPT-tuned's full shift of half the channels (time_mix_init = 1) and stays learnable;
time-weighting starts at the identity. Writes OUT/results.json and OUT/results.md.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
from compare import ROOT, Runner, parse_train_log, write_results  # noqa: E402

VARIANTS = {
    'baseline': ('no tricks', {}),
    'time_weighting': ('time-weighting', dict(time_weighting=True)),
    'time_mixing': ('time-mixing (mix starts at 1)', dict(time_mixing=True, time_mix_init=1.0)),
    'both': ('time-weighting + time-mixing', dict(time_weighting=True, time_mixing=True, time_mix_init=1.0)),
}
QUICK = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, eval_iters=2)


def markdown(rows, command, minutes):
    lines = ['| variant | params | train loss init | val loss init | train loss | val loss | ms/step |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        (_, t0, v0), (_, t1, v1) = r['evals'][0], r['evals'][-1]
        lines.append(f"| {r['label']} | {r['params']:,} | {t0:.3f} | {v0:.3f} | {t1:.3f} | {v1:.3f} | "
                     f"{r['ms_per_step']:.0f} |")
    return '\n'.join(lines) + f"\n\n`{command}` ({minutes:.1f} min)\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('--quick', action='store_true', help='tiny model and a few steps')
    p.add_argument('--max_iters', type=int, default=None, help="steps per variant (default: the config's 150)")
    p.add_argument('--out', default=os.path.join(ROOT, 'out', 'mingpt_tricks'))
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    run = Runner(out)
    t_start = time.time()
    if not all(os.path.isfile(os.path.join(ROOT, 'data', 'shakespeare_char', f'{x}.bin')) for x in ('train', 'val')):
        run('prepare', os.path.join('data', 'shakespeare_char', 'prepare.py'))
    common = dict(QUICK, max_iters=3) if args.quick else {}
    if args.max_iters:
        common.update(max_iters=args.max_iters)
    if 'max_iters' in common:
        n = common['max_iters']
        common.update(eval_interval=n, lr_decay_iters=n, warmup_iters=max(1, n // 10))
    rows = []
    for name, (label, tricks) in VARIANTS.items():
        overrides = dict(common, out_dir=os.path.join(out, name), **tricks)
        log = parse_train_log(run(name, 'train.py', 'config/mingpt_tricks.py',
                                  *[f'--{k}={v}' for k, v in overrides.items()]))
        rows.append(dict(name=name, label=label, **log))
    command = 'python script/mingpt_tricks.py' + (' --quick' if args.quick else '') + \
        (f' --max_iters {args.max_iters}' if args.max_iters else '')
    minutes = (time.time() - t_start) / 60
    md = markdown(rows, command, minutes)
    write_results(out, md, dict(command=command, minutes=round(minutes, 2), rows=rows))


if __name__ == '__main__':
    cli.run(main)
