"""
What script/demo.py and script/compare.py share: the toolkit's scripts run as logged
subprocesses, what their logs say, and the held-out test text.

A stage dies with its parent: SIGINT or SIGTERM to the parent is passed on to every running
stage (which saves and exits, as train.py does), the parent waits for them and then stops with
KeyboardInterrupt (exit 130 through cli.run); no stage starts after it.
"""

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from texts import wikitext_rows  # noqa: E402

WIKITEXT_TEST = os.path.join(ROOT, 'data', 'texts', 'wikitext-103-v1', 'wiki.test.tokens')
OFFLINE = dict(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_VERBOSITY='error', PYTHONUNBUFFERED='1')

EVAL_RE = re.compile(r'^eval (\d+) \| train ([\d.]+) \| val ([\d.]+)', re.M)
ITER_RE = re.compile(r'^iter (\d+) \| .*?\| ([\d.]+) ms/iter', re.M)
PARAMS_RE = re.compile(r'^model: ([\d,]+) parameters', re.M)
INRANK_RE = re.compile(r'^inrank (\d+) \| (.*)$', re.M)


RUNNING = set()  # the stages' processes now running
STARTING = []  # one entry per stage between Popen and RUNNING: a signal then must not orphan it
STOP = []  # the signal that asked this process to stop, once one came


def forward_signals():
    """Pass SIGINT and SIGTERM on to the running stages instead of dying with them running. Called
    from the main thread (run_script calls it when it runs there); a parent that runs stages in
    threads calls it once itself."""
    def on_signal(signum, frame):
        STOP.append(signal.Signals(signum).name)
        if not RUNNING and not STARTING:
            raise KeyboardInterrupt
        for proc in list(RUNNING):
            proc.signalled = True
            proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def run_script(args, log_path, threads=None, echo=None):
    """Run `python args...` in the repository root, offline, its output written to log_path as it
    comes (so a long stage can be followed with tail -f); lines for which echo(line) is true are
    printed too. threads sets OMP_NUM_THREADS (one per process when several run side by side).
    Returns the output; a failure raises ValueError with the log's last lines."""
    if threading.current_thread() is threading.main_thread():
        forward_signals()
    if STOP:
        raise KeyboardInterrupt
    env = dict(os.environ, **OFFLINE)
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    with open(log_path, 'w') as log:
        log.write('python ' + ' '.join(map(str, args)) + '\n')
        log.flush()
        # in a session of its own, so that a Ctrl-C in the terminal reaches the stage once, from here
        STARTING.append(args)
        try:
            proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            RUNNING.add(proc)
        finally:
            STARTING.remove(args)
        if STOP and not getattr(proc, 'signalled', False):  # a signal came while it started: pass it on
            proc.send_signal(getattr(signal, STOP[0]))
        try:
            lines = []
            for line in proc.stdout:
                log.write(line)
                log.flush()
                lines.append(line)
                if echo and echo(line):
                    print(f"    {line.rstrip()}", flush=True)
            proc.wait()
        finally:
            RUNNING.discard(proc)
            if proc.poll() is None:  # this process failed while reading: the stage must not outlive it
                proc.terminate()
                proc.wait()
    if STOP:
        print(f"{' '.join(map(str, args[:1]))} stopped by {STOP[0]} (exit {proc.returncode}); see {log_path}",
              file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    if proc.returncode:
        tail = ''.join(lines[-8:]).rstrip()
        raise ValueError(f"{' '.join(map(str, args[:1]))} failed (exit {proc.returncode}); end of {log_path}:\n{tail}")
    return ''.join(lines)


def parse_train_log(text):
    """What train.py's log says: evals [(iter, train loss, val loss)], median ms per step (the
    first step excluded), parameters (paper count), InRank's rank changes."""
    evals = [(int(i), float(t), float(v)) for i, t, v in EVAL_RE.findall(text)]
    ms = [float(m) for i, m in ITER_RE.findall(text) if int(i) > 0]
    params = PARAMS_RE.search(text)
    return dict(evals=evals, ms_per_step=statistics.median(ms) if ms else None,
                params=int(params.group(1).replace(',', '')) if params else None,
                rank_changes=INRANK_RE.findall(text))


def wikitext_test_head(n_chars, path):
    """The first whole rows of WikiText-103's test split, joined with "\\n\\n" as perplexity_eval.py
    joins the whole split, up to about n_chars characters (0: all of it), written to path."""
    rows, size = [], 0
    for row in wikitext_rows(WIKITEXT_TEST):
        rows.append(row)
        size += len(row)
        if n_chars and size >= n_chars:
            break
    with open(path, 'w', encoding='utf-8') as f:
        f.write("\n\n".join(rows))
    return path


def clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """One line per finished job with the elapsed time and an estimate of what is left."""

    def __init__(self, total):
        self.total, self.done, self.start = total, 0, time.time()

    def tick(self, what):
        self.done += 1
        elapsed = time.time() - self.start
        left = elapsed / self.done * (self.total - self.done)
        print(f"  [{self.done}/{self.total}] {what} | {clock(elapsed)} elapsed, about {clock(left)} left", flush=True)
