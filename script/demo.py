"""
The whole Krony-PT pipeline on a small real corpus, offline: train a dense teacher, decompose it
(Van Loan with normalisation), train the Kronecker student, export it to Hugging Face format and
compare perplexities on held-out WikiText-103 test text.

    bash script/demo.sh                       # installs the requirements, then runs this
    python script/demo.py [--out_dir checks/demo] [--quick]

Every stage runs the project's own scripts as subprocesses (their full output goes to
OUT_DIR/logs/). On a CPU the models are tiny and the evaluation uses the first ~100 kB of the test
split (minutes in all); with a GPU they are larger and the whole test split is evaluated.
--quick is a seconds-long smoke run of the same pipeline (tests/test_demo.py).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_TEXT = os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.test.tokens')

# per setting: train.py overrides shared by teacher and student, and the evaluation text
# (characters of the test split; 0 = all of it, as perplexity_eval.py's wiki103)
SETTINGS = {
    'cpu': dict(model=[], teacher=[], student=[], n_embd=64, eval_chars=100_000),
    'gpu': dict(model=['--n_layer=6', '--n_head=6', '--n_embd=384', '--block_size=256', '--batch_size=32'],
                teacher=['--max_iters=2000', '--lr_decay_iters=2000', '--eval_interval=250', '--learning_rate=1e-3'],
                student=['--max_iters=1000', '--lr_decay_iters=1000', '--eval_interval=250', '--block_size=256',
                         '--batch_size=32'],
                n_embd=384, eval_chars=0),
    'quick': dict(model=['--n_layer=1', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=2'],
                  teacher=['--max_iters=4', '--lr_decay_iters=4', '--eval_interval=4', '--eval_iters=1'],
                  student=['--max_iters=2', '--lr_decay_iters=2', '--eval_interval=2', '--eval_iters=1',
                           '--block_size=32', '--batch_size=2'],
                  n_embd=32, eval_chars=3_000),
}


def run_stage(name, args, log_dir, show=()):
    """Run `python args...` in the repository root; its output goes to log_dir/name.log and the
    lines starting with any of `show` are echoed. A failure raises with the log's last lines."""
    print(f"[{name}] python {' '.join(args)}", flush=True)
    path = os.path.join(log_dir, f'{name}.log')
    env = dict(os.environ, PYTHONUNBUFFERED='1', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_VERBOSITY='error')
    t0 = time.time()
    with open(path, 'w') as log:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            log.flush()  # so that the log can be followed while a stage runs
            if line.startswith(tuple(show)):
                print(f"    {line.rstrip()}", flush=True)
        proc.wait()
    if proc.returncode:
        with open(path) as f:
            tail = ''.join(f.readlines()[-15:])
        raise ValueError(f"stage {name} failed (exit {proc.returncode}); end of {path}:\n{tail}")
    print(f"    done in {time.time() - t0:.1f} s", flush=True)


def write_eval_text(path, n_chars):
    """The first rows of the WikiText-103 test split, joined with "\\n\\n" as perplexity_eval.py's
    wiki103 protocol joins the whole split, up to about n_chars characters."""
    with open(TEST_TEXT, encoding='utf-8') as f:
        rows, size = [], 0
        for row in f:
            rows.append(row if row.strip() else '')  # HF's wikitext rows: a blank line is ''
            size += len(row)
            if size >= n_chars:
                break
    with open(path, 'w', encoding='utf-8') as f:
        f.write("\n\n".join(rows))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('--out_dir', default=os.path.join('checks', 'demo'), help='everything the demo writes')
    p.add_argument('--quick', action='store_true', help='a seconds-long smoke run of the same pipeline')
    args = p.parse_args()
    import torch  # only to see whether there is a GPU
    setting = 'quick' if args.quick else ('gpu' if torch.cuda.is_available() else 'cpu')
    s = SETTINGS[setting]
    out = os.path.abspath(args.out_dir)
    logs = os.path.join(out, 'logs')
    os.makedirs(logs, exist_ok=True)
    d = s['n_embd']
    paths = dict(teacher=os.path.join(out, 'teacher'), student=os.path.join(out, 'student'),
                 init=os.path.join(out, f'kron_{d}_{d}_1_vl.pt'), hf=os.path.join(out, 'student_hf'))
    t_start = time.time()
    print(f"demo ({setting} setting), writing to {out}")

    run_stage('prepare', ['data/wikitext103_valid/prepare.py'], logs, show=('train ',))
    run_stage('teacher', ['train.py', 'config/demo_teacher.py', f"--out_dir={paths['teacher']}",
                          *s['model'], *s['teacher']], logs, show=('model:', 'eval '))
    # the analogue of the 81M model's `768 768 1`: A is (n_embd, n_embd), B is (1, 4)
    run_stage('decompose', ['kron_decompose.py', str(d), str(d), '1', '--init', 'vl',
                            '--from', os.path.join(paths['teacher'], 'best.pt'), '--out', paths['init']], logs)
    run_stage('student', ['train.py', 'config/demo_student.py', f"--init_from={paths['init']}",
                          f"--out_dir={paths['student']}", *s['student']], logs, show=('model:', 'eval '))
    run_stage('convert', ['krony_to_gpt.py', os.path.join(paths['student'], 'best.pt'), paths['hf'], '--force'], logs)

    if s['eval_chars']:
        text = os.path.join(out, 'wiki103_test_head.txt')
        write_eval_text(text, s['eval_chars'])
        data = ['--text_file', text]
        what = f"first {s['eval_chars'] // 1000} kB of WikiText-103 test"
    else:
        data = ['wiki103']
        what = 'WikiText-103 test'
    rows = [('teacher (dense, trained)', os.path.join(paths['teacher'], 'best.pt')),
            ('student at init (Kronecker VL)', paths['init']),
            ('student trained (HF export)', paths['hf'])]
    results = []
    for i, (label, model) in enumerate(rows):
        js = os.path.join(out, f'eval_{i}.json')
        run_stage(f'eval_{i}', ['perplexity_eval.py', model, *data, '--json', js], logs)
        with open(js) as f:
            res = json.load(f)
        results.append((label, res['params_paper'], next(iter(res['results'].values()))['ppl']))
    # the HF export folds the factors into dense matrices; the student's size is its factored one
    results[2] = (results[2][0], results[1][1], results[2][2])

    print(f"\nperplexity on held-out text ({what}; perplexity_eval.py's default window protocol)")
    print(f"{'model':<32} {'params':>12} {'ppl':>10}")
    for label, n, ppl in results:
        print(f"{label:<32} {n:>12,} {ppl:>10.2f}")
    print(f"\ntotal {time.time() - t_start:.0f} s; logs in {logs}")


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
