"""
The whole Krony-PT pipeline on a CPU in minutes, offline, in a regime where compression matters:
train a dense character-level teacher, decompose its MLPs (Van Loan with normalisation, the 81M
shape: every MLP matrix 4x smaller), train the Kronecker student on fewer tokens, export it to
Hugging Face format and measure all three on held-out WikiText-103 test text.

    bash script/demo.sh                       # installs the requirements, then runs this
    python script/demo.py [--out_dir out/demo] [--quick]

Every stage runs the project's own scripts as subprocesses (full logs in OUT_DIR/logs/):
data/wikitext103_valid_char/prepare.py, train.py config/mini_teacher.py, kron_decompose.py,
train.py config/mini_student.py, krony_to_gpt.py, perplexity_eval.py. Then the three models'
forward speed is measured side by side in this process. --quick is a seconds-long smoke run of the
same pipeline on tiny sizes, written to its own folder (out/demo_quick).
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import errors  # noqa: E402
from outputs import check_destination, output_lock  # noqa: E402
from stages import ROOT, clock, run_script, wikitext_test_head  # noqa: E402

# train.py overrides of the quick smoke run (the full run uses the config files as they are)
QUICK = dict(model=['--n_layer=2', '--n_head=2', '--n_embd=24', '--block_size=32', '--batch_size=4'],
             teacher=['--max_iters=8', '--lr_decay_iters=8', '--eval_interval=4', '--eval_iters=2', '--log_interval=2'],
             student=['--max_iters=4', '--lr_decay_iters=4', '--eval_interval=2', '--eval_iters=2', '--log_interval=2',
                      '--block_size=32', '--batch_size=4'],
             n_embd=24, test_chars=3_000, speed_rounds=2, threads=1)
FULL = dict(model=[], teacher=[], student=[], n_embd=96, test_chars=200_000, speed_rounds=7, threads=None)


def show(line):
    """The lines of the stages' logs worth seeing while they run."""
    return line.startswith(('model:', 'eval ', 'iter ', 'done:', 'wrote ', 'parameters', 'note:'))


def forward_speed(paths, rounds, tokens=8192):
    """Forward tokens/s of each checkpoint's model (evaluation, no gradients) on full-length
    sequences, measured side by side: every round runs each model once in turn, reversed every
    other round; medians over rounds."""
    import torch
    from checkpoint import load_model
    torch.manual_seed(0)
    models = {label: load_model(path)[0].eval() for label, path in paths.items()}
    vocab = next(iter(models.values())).config.vocab_size
    block_size = min(m.config.block_size for m in models.values())
    x = torch.randint(vocab, (max(1, tokens // block_size), block_size))
    times = {label: [] for label in models}
    with torch.no_grad():
        for m in models.values():
            m(x)  # warm-up
        for r in range(rounds):
            for label in list(models) if r % 2 == 0 else list(models)[::-1]:
                t0 = time.perf_counter()
                models[label](x)
                times[label].append(time.perf_counter() - t0)
    return {label: x.numel() / statistics.median(t) for label, t in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('--out_dir', default=None, help='everything the demo writes (default out/demo, or out/demo_quick)')
    p.add_argument('--quick', action='store_true', help='a seconds-long smoke run of the same pipeline')
    args = p.parse_args()
    s = QUICK if args.quick else FULL
    out = os.path.abspath(args.out_dir or os.path.join(ROOT, 'out', 'demo_quick' if args.quick else 'demo'))
    check_destination(out, kind='dir')
    with output_lock(out):  # a second demo into the same folder fails at once
        demo(args, s, out)


def demo(args, s, out):
    logs = os.path.join(out, 'logs')
    os.makedirs(logs, exist_ok=True)
    d = s['n_embd']
    paths = dict(teacher=os.path.join(out, 'teacher'), student=os.path.join(out, 'student'),
                 init=os.path.join(out, f'kron_{d}_{d}_1_vl.pt'), hf=os.path.join(out, 'student_hf'))
    t_start = time.time()
    print(f"demo{' (--quick)' if args.quick else ''}: writing to {out}", flush=True)

    def stage(name, cmd):
        cmd = [str(c) for c in cmd]
        print(f"[{name}] python {' '.join(cmd)}", flush=True)
        t0 = time.time()
        text = run_script(cmd, os.path.join(logs, f'{name}.log'), threads=s['threads'], echo=show)
        print(f"    done in {time.time() - t0:.1f} s ({clock(time.time() - t_start)} in all)", flush=True)
        return text

    # the quick run prepares its own copy of the data: it never writes into the repository's data/
    data = os.path.join(out, 'data') if args.quick else os.path.join(ROOT, 'data', 'wikitext103_valid_char')
    stage('prepare', ['data/wikitext103_valid_char/prepare.py', '--out_dir', data])
    dataset = [f'--dataset={data}']
    stage('teacher', ['train.py', 'config/mini_teacher.py', f"--out_dir={paths['teacher']}", *dataset,
                      *s['model'], *s['teacher']])
    # the analogue of the 81M model's `768 768 1`: A is (n_embd, n_embd), B is (1, 4)
    stage('decompose', ['kron_decompose.py', d, d, 1, '--from', os.path.join(paths['teacher'], 'best.pt'),
                        '--out', paths['init'], '--force'])
    stage('student', ['train.py', 'config/mini_student.py', f"--init_from={paths['init']}",
                      f"--out_dir={paths['student']}", *dataset, *s['student']])
    stage('export', ['krony_to_gpt.py', os.path.join(paths['student'], 'best.pt'), paths['hf'], '--force'])

    text = wikitext_test_head(s['test_chars'], os.path.join(out, 'test_text.txt'))
    what = 'WikiText-103 test' + (f", first {s['test_chars']:,} characters" if s['test_chars'] else '')
    rows = [('teacher (dense)', os.path.join(paths['teacher'], 'best.pt')),
            ('student at init (Kronecker VL)', paths['init']),
            ('student trained (HF export)', paths['hf'])]
    results = []
    for i, (label, model) in enumerate(rows):
        js = os.path.join(out, f'eval_{i}.json')
        stage(f'eval_{i}', ['perplexity_eval.py', model, '--text_file', text, '--json', js])
        with open(js) as f:
            results.append(next(iter(json.load(f)['results'].values())))
    print("[speed] forward tokens/s, side by side in this process", flush=True)
    ckpts = {label: path for (label, path) in rows[:2]}
    ckpts['student trained (HF export)'] = os.path.join(paths['student'], 'best.pt')  # the factored model
    speed = forward_speed(ckpts, s['speed_rounds'])

    from checkpoint import load_model
    sizes = [load_model(path)[0] for path in ckpts.values()]
    print(f"\nheld-out text: {what} ({results[0]['n_tokens']:,} characters; perplexity_eval.py's window "
          f"protocol, {results[0]['max_length']}-character windows)")
    print(f"{'model':<32} {'params':>9} {'MLP params':>11} {'ppl/char':>9} {'bits/byte':>10} {'forward tok/s':>14}")
    for (label, _), res, m, tps in zip(rows, results, sizes, speed.values()):
        print(f"{label:<32} {m.num_params():>9,} {m.mlp_params():>11,} {res['ppl']:>9.3f} {res['bpb']:>10.4f} {tps:>14,.0f}")
    teacher, student = sizes[0], sizes[2]
    print(f"\nstudent / teacher: {student.num_params() / teacher.num_params():.2f}x the parameters, "
          f"{speed[rows[2][0]] / speed[rows[0][0]]:.2f}x the forward speed; the student trained on "
          f"{tokens_seen(os.path.join(logs, 'student.log')) / tokens_seen(os.path.join(logs, 'teacher.log')):.2f}x "
          f"the teacher's tokens")
    print(f"total {clock(time.time() - t_start)}; logs in {logs}")


def tokens_seen(log_path):
    """Tokens a train.py run trained on: its steps times the tokens per step, from its log."""
    with open(log_path) as f:
        text = f.read()
    per_step = int(re.search(r'\| ([\d,]+) tokens per iteration', text).group(1).replace(',', ''))
    steps = int(re.search(r'^done: (\d+) iterations', text, re.M).group(1))
    return per_step * steps


if __name__ == '__main__':
    errors.run(main)
