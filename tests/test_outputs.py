"""Nothing the user owns is ever deleted (outputs.py and every script that writes): replaced outputs,
outputs that alias inputs, one writer per output, vocabularies that survive an export, the last
tracebacks, and signals that stop a run or a demo's stage. The command lines run in the harness of
test_bad_inputs.py: a failure is one `error: ...` line, a non-zero exit and a byte-identical
workspace; a success changes exactly the files named here."""
import contextlib
import errno
import json
import os
import pathlib
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from checkpoint import load_checkpoint
from cli_runs import HARNESS, assert_one_line_error
from conftest import ROOT
from outputs import atomic_dir, atomic_write, output_lock
from test_bad_inputs import TINY, save, tiny

CHARS = {'vocab_size': 40, 'itos': {i: chr(65 + i) for i in range(40)}}


def workspace(d):
    chars = d / 'chars'  # a character dataset
    chars.mkdir()
    ids = np.random.default_rng(0).integers(0, 40, 5000).astype(np.uint16)
    ids.tofile(chars / 'train.bin')
    ids[:1000].tofile(chars / 'val.bin')
    with open(chars / 'meta.pkl', 'wb') as f:
        pickle.dump(CHARS, f)
    bpe = d / 'bpe'  # GPT-2 BPE tokens: no meta.pkl
    bpe.mkdir()
    ids = np.random.default_rng(0).integers(0, 50257, 5000).astype(np.uint16)
    ids.tofile(bpe / 'train.bin')
    ids[:1000].tofile(bpe / 'val.bin')
    gpt2 = save(tiny(50257), d / 'gpt2_tiny.pt')
    (d / 'gpt2_link.pt').symlink_to(d / 'gpt2_tiny.pt')
    char_model = tiny(40)
    save(char_model, d / 'char.pt', vocab=CHARS)
    save(tiny(100), d / 'vocab100.pt')
    for name, where in (('nan', (0, 0)), ('inf', (3, 5))):
        m = tiny(50257)
        with torch.no_grad():
            m.transformer.h[0].mlp.c_fc.weight[where] = float('nan') if name == 'nan' else float('inf')
        save(m, d / f'{name}.pt')
    (d / 'run').mkdir()  # a run folder: the input checkpoint, the run's ckpt.pt and the user's notes
    save(tiny(50257), d / 'run' / 'best.pt')
    shutil.copy(d / 'run' / 'best.pt', d / 'run' / 'ckpt.pt')
    (d / 'run' / 'notes.txt').write_text('mine')
    (d / 'nest' / 'inner').mkdir(parents=True)
    shutil.copy(gpt2, d / 'nest' / 'inner' / 'k.pt')
    from krony_to_gpt import export
    from tokenizer import CharTokenizer, GPT2BPE
    export(tiny(50257), d / 'hf_dense', tok=GPT2BPE())
    export(char_model, d / 'char_hf', tok=CharTokenizer.from_meta(CHARS))
    (d / 'text.txt').write_text('The tower is 324 metres tall.\n' * 40)
    (d / 'existing.json').write_text('{"mine": 1}\n')
    (d / 'results.json').write_text('{"model": "earlier", "results": {}}\n')
    # the export's folder edge cases: the user's own OUT_DIR.old folder and file, an empty folder
    # (a mount point), a symlink to one, a folder to replace with --force
    (d / 'hf_a.old').mkdir()
    (d / 'hf_a.old' / 'backup.txt').write_text('my backup')
    (d / 'hf_b.old').write_text('a file of mine')
    (d / 'mount').mkdir()
    (d / 'target').mkdir()
    (d / 'hf_link').symlink_to(d / 'target')
    (d / 'hf_old').mkdir()
    (d / 'hf_old' / 'old.txt').write_text('replace me')
    (d / 'locked').mkdir()
    return gpt2


# outputs that another writer holds while the cases run (the test process takes their locks)
LOCKED = ('locked/k.pt', 'locked/c.pt', 'locked/hf', 'locked/r.json', 'locked/run', 'locked/demo',
          'locked/compare', 'locked/bench.json', 'locked/gpu')


def cases(d):
    """name -> (argv, text the error line must contain); every one must fail and change nothing."""
    g, hf = d / 'gpt2_tiny.pt', d / 'hf_dense'
    return {
        # 1. --force never replaces an input, a folder holding one, or the working directory
        'export_into_the_inputs_folder': (['krony_to_gpt.py', d / 'run' / 'best.pt', d / 'run', '--force'],
                                          'holds the input'),
        'export_over_a_parent_of_the_input': (['krony_to_gpt.py', d / 'nest' / 'inner' / 'k.pt', d / 'nest', '--force'],
                                              'holds the input'),
        # 2. outputs never alias inputs, with or without --force, symlinks resolved
        'decompose_out_is_from': (['kron_decompose.py', 16, 16, 1, '--from', g, '--out', g, '--force'], 'is the input'),
        'decompose_out_is_from_by_a_symlink': (['kron_decompose.py', 16, 16, 1, '--from', g, '--out',
                                                d / 'gpt2_link.pt', '--force'], 'is the input'),
        'decompose_out_inside_the_hf_source': (['kron_decompose.py', 16, 16, 1, '--from', hf, '--out',
                                                hf / 'model.safetensors', '--force'], 'lies inside the input'),
        'compress_lowrank_out_is_from': (['compress.py', 'lowrank', 2, '--from', g, '--out', g, '--force'],
                                         'is the input'),
        'compress_truncate_out_is_from': (['compress.py', 'truncate', '--from', g, '--out', g, '--force'],
                                          'is the input'),
        'eval_json_is_the_text_file': (['perplexity_eval.py', g, '--text_file', d / 'text.txt', '--json',
                                        d / 'text.txt'], 'is the input'),
        'eval_json_not_a_results_file': (['perplexity_eval.py', g, '--text_file', d / 'text.txt', '--json',
                                          d / 'existing.json'], 'is not a results file'),
        'train_init_from_in_its_out_dir': ([*TINY, f"--dataset={d / 'bpe'}", f"--out_dir={d / 'run'}",
                                            f"--init_from={d / 'run' / 'best.pt'}"], 'is the input'),
        'prepare_source_is_an_output': (['data/shakespeare_char/prepare.py', '--source', d / 'chars' / 'train.bin',
                                         '--out_dir', d / 'chars'], 'is the input'),
        # 3. one writer per output
        'decompose_out_being_written': (['kron_decompose.py', 16, 16, 1, '--from', g, '--out', d / LOCKED[0]],
                                        'being written by another process (pid'),
        'compress_out_being_written': (['compress.py', 'lowrank', 2, '--from', g, '--out', d / LOCKED[1]],
                                       'being written by another process (pid'),
        'export_out_dir_being_written': (['krony_to_gpt.py', g, d / LOCKED[2]], 'being written by another process (pid'),
        'eval_json_being_written': (['perplexity_eval.py', g, '--text_file', d / 'text.txt', '--json', d / LOCKED[3]],
                                    'being written by another process (pid'),
        'train_out_dir_being_written': ([*TINY, f"--dataset={d / 'chars'}", f"--out_dir={d / LOCKED[4]}"],
                                        'being written by another process (pid'),
        'demo_out_dir_being_written': (['script/demo.py', '--quick', '--out_dir', d / LOCKED[5]],
                                       'being written by another process (pid'),
        'compare_out_being_written': (['script/compare.py', '--quick', '--out', d / LOCKED[6]],
                                      'being written by another process (pid'),
        'bench_json_being_written': (['script/bench.py', '--quick', '--json', d / LOCKED[7]],
                                     'being written by another process (pid'),
        'gpu_check_out_being_written': (['script/gpu_check.py', '--device', 'cpu', '--out', d / LOCKED[8]],
                                        'being written by another process (pid'),
        # 4. vocabularies: a checkpoint whose tokens do not fit the dataset
        'train_char_checkpoint_on_bpe_data': ([*TINY, f"--dataset={d / 'bpe'}", f"--out_dir={d / 'new_run'}",
                                               f"--init_from={d / 'char.pt'}"], 'is not a character dataset'),
        'train_small_vocabulary_on_bpe_data': ([*TINY, f"--dataset={d / 'bpe'}", f"--out_dir={d / 'new_run'}",
                                                f"--init_from={d / 'vocab100.pt'}"], 'holds GPT-2 BPE tokens'),
        # 6. non-finite weights are named before any fit
        'decompose_nan_weight': (['kron_decompose.py', 16, 16, 1, '--from', d / 'nan.pt', '--out', d / 'k.pt'],
                                 'transformer.h.0.mlp.c_fc.weight has 1 non-finite'),
        'decompose_prune_inf_weight': (['kron_decompose.py', 8, 64, 1, '--init', 'prune', '--from', d / 'inf.pt',
                                        '--out', d / 'k.pt'], 'transformer.h.0.mlp.c_fc.weight has 1 non-finite'),
        'compress_lowrank_nan_weight': (['compress.py', 'lowrank', 2, '--from', d / 'nan.pt', '--out', d / 'c.pt'],
                                        'transformer.h.0.mlp.c_fc.weight has 1 non-finite'),
        # 7. the dataset hint for an absolute path
        'train_absolute_dataset_missing': ([*TINY, f"--dataset={d / 'no_data'}", f"--out_dir={d / 'new_run'}"],
                                           f"prepare.py --out_dir {d / 'no_data'}"),
    }


EXPORT = {'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'}


def good_cases(d):
    """name -> (argv, the files the run must change: written, replaced or removed)."""
    g = d / 'gpt2_tiny.pt'
    gpt2_files = EXPORT | {'vocab.json', 'merges.txt'}
    return {
        'export_beside_the_users_old_folder': (['krony_to_gpt.py', g, d / 'hf_a'], {f'hf_a/{n}' for n in gpt2_files}),
        'export_beside_the_users_old_file': (['krony_to_gpt.py', g, d / 'hf_b'], {f'hf_b/{n}' for n in gpt2_files}),
        'export_into_an_empty_folder': (['krony_to_gpt.py', g, d / 'mount'], {f'mount/{n}' for n in gpt2_files}),
        'export_through_a_symlink': (['krony_to_gpt.py', g, d / 'hf_link'], {f'target/{n}' for n in gpt2_files}),
        'export_force_replaces_the_folder': (['krony_to_gpt.py', g, d / 'hf_old', '--force'],
                                             {f'hf_old/{n}' for n in gpt2_files} | {'hf_old/old.txt'}),
        'eval_json_replaces_earlier_results': (['perplexity_eval.py', g, '--text_file', d / 'text.txt', '--json',
                                                d / 'results.json'], {'results.json'}),
        'eval_json_force': (['perplexity_eval.py', g, '--text_file', d / 'text.txt', '--json', d / 'existing.json',
                             '--force'], {'existing.json'}),
        'decompose_from_a_character_export': (['kron_decompose.py', 16, 16, 1, '--from', d / 'char_hf', '--out',
                                               d / 'k_char.pt'], {'k_char.pt'}),
        'compress_from_a_character_export': (['compress.py', 'lowrank', 2, '--from', d / 'char_hf', '--out',
                                              d / 'c_char.pt'], {'c_char.pt'}),
    }


def run_harness(d, table):
    argv = {name: [str(a) for a in args] for name, (args, _) in table.items()}
    out = subprocess.run([sys.executable, '-c', HARNESS, json.dumps(argv), str(d)], cwd=ROOT, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp('own')
    workspace(d)
    table = {**cases(d), **good_cases(d)}
    mount = os.stat(d / 'mount').st_ino
    with contextlib.ExitStack() as held:
        for rel in LOCKED:
            held.enter_context(output_lock(d / rel))
        res = run_harness(d, table)
    # an empty folder is filled in place, never renamed: what a mount point (a container volume) needs
    assert os.stat(d / 'mount').st_ino == mount
    # one as a real process too: the harness reports what a shell would see
    real = subprocess.run([sys.executable, *map(str, table['decompose_out_is_from'][0])], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert [real.returncode, real.stderr] == res['decompose_out_is_from'][:2]
    return table, res, d


def names(fn):
    return list(fn(pathlib.Path('/ws')))


@pytest.mark.parametrize('name', names(cases))
def test_refused_cleanly(results, name):
    table, res, d = results
    code, err, changed = res[name]
    assert_one_line_error(code, err, [table[name][1]])
    assert 'data//' not in err
    assert changed == [], changed  # nothing written, replaced or deleted, no lock or temporary file left


@pytest.mark.parametrize('name', names(good_cases))
def test_written_without_touching_anything_else(results, name):
    table, res, d = results
    code, err, changed = res[name]
    assert code == 0, err
    assert set(changed) == table[name][1]
    assert not [n for n in os.listdir(d) if n.endswith(('.partial', '.lock')) or '.replaced-' in n]


def test_the_users_files_beside_an_export_are_kept(results):
    _, _, d = results
    assert (d / 'hf_a.old' / 'backup.txt').read_text() == 'my backup'
    assert (d / 'hf_b.old').read_text() == 'a file of mine'
    assert (d / 'hf_link').is_symlink() and (d / 'target' / 'model.safetensors').is_file()
    assert not (d / 'hf_old' / 'old.txt').exists() and (d / 'hf_old' / 'config.json').is_file()


def test_a_character_vocabulary_survives_the_export(results):
    """A model decomposed or compressed from a character model's HF export keeps its characters,
    so it can be evaluated and exported again."""
    _, _, d = results
    for name in ('k_char.pt', 'c_char.pt'):
        vocab = load_checkpoint(d / name)['vocab']
        assert [vocab['itos'][i] for i in range(vocab['vocab_size'])] == [CHARS['itos'][i] for i in range(40)]
    from checkpoint import load_model
    from tokenizer import tokenizer_for
    model, ckpt = load_model(str(d / 'k_char.pt'))
    assert tokenizer_for(model, ckpt).encode('ABC') == [0, 1, 2]


def test_force_never_replaces_the_working_directory(tmp_path):
    save(tiny(50257), tmp_path / 'elsewhere.pt')
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'mine.txt').write_text('mine')
    for out in ('.', str(tmp_path)):
        r = subprocess.run([sys.executable, os.path.join(ROOT, 'krony_to_gpt.py'), str(tmp_path / 'elsewhere.pt'),
                            out, '--force'], cwd=work, capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and r.stderr.count('\n') == 1, r.stderr
        assert 'holds the working directory' in r.stderr or 'holds the input' in r.stderr
    assert sorted(os.listdir(work)) == ['mine.txt'] and sorted(os.listdir(tmp_path)) == ['elsewhere.pt', 'work']


# -----------------------------------------------------------------------------
# writes that fail or are interrupted

def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path):
    path = tmp_path / 'x.pt'
    path.write_bytes(b'previous')

    def full(f):
        f.write(b'half')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(ValueError, match='the disk is full; the previous file'):
        atomic_write(path, full)
    assert path.read_bytes() == b'previous' and os.listdir(tmp_path) == ['x.pt']


def test_safetensors_on_a_full_disk_is_one_line_and_keeps_the_previous_folder(tmp_path):
    """safetensors reports a full disk in its own SafetensorError (the message below is its text)."""
    from safetensors import SafetensorError
    out = tmp_path / 'hf'
    out.mkdir()
    (out / 'config.json').write_text('previous')
    with pytest.raises(ValueError, match='the disk is full; the previous directory'):
        with atomic_dir(out, force=True):
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                  'message: "No space left on device" })')
    assert os.listdir(tmp_path) == ['hf'] and (out / 'config.json').read_text() == 'previous'


def test_ctrl_c_during_a_checkpoint_write_exits_130_and_keeps_the_old_file(tmp_path):
    """The interrupt arrives inside torch.save, which turns it into its own error when it lands in
    its native writer; the script still ends as an interrupt, the previous checkpoint intact."""
    path = tmp_path / 'k.pt'
    path.write_bytes(b'the previous checkpoint')
    code = f'''
import os, signal, sys, torch
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started with SIGINT ignored
sys.path.insert(0, {ROOT!r})
import errors
from outputs import atomic_write

def write(f):
    torch.save({{'a': torch.zeros(1000)}}, f)
    os.kill(os.getpid(), signal.SIGINT)
    torch.save({{'b': torch.zeros(10 ** 6)}}, f)

errors.run(lambda: atomic_write({str(path)!r}, write))
'''
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 130 and r.stderr == 'interrupted\n', r.stderr
    assert path.read_bytes() == b'the previous checkpoint' and os.listdir(tmp_path) == ['k.pt']


# -----------------------------------------------------------------------------
# one writer per output, signals

def start(args, **kw):
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for_line(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting {prefix!r}; stderr: {proc.stderr.read()[-2000:]}")


def test_two_trainers_on_one_out_dir(char_data, tmp_path):
    """The second train.py on an out_dir fails at once, naming the first; the first goes on and
    stops on SIGTERM during its (long) evaluation, within a batch, saving a checkpoint that resumes
    with that evaluation."""
    out = tmp_path / 'run'
    first = start([*TINY, f'--dataset={char_data}', f'--out_dir={out}', '--max_iters=4', '--eval_iters=1000000'])
    try:
        wait_for_line(first, 'model:')  # set up: the evaluation of iteration 0 starts now
        second = subprocess.run([sys.executable, *TINY, f'--dataset={char_data}', f'--out_dir={out}'], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 1 and second.stderr.count('\n') == 1, second.stderr
        assert f'is being written by another process (pid {first.pid})' in second.stderr
        first.send_signal(signal.SIGTERM)
        rest, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert 'stopped by a signal during the evaluation at iteration 0' in rest
    assert load_checkpoint(out / 'ckpt.pt')['eval_pending'] is True
    assert sorted(os.listdir(tmp_path)) == ['run'] and sorted(os.listdir(out)) == ['ckpt.pt']  # lock removed
    resumed = subprocess.run([sys.executable, *TINY, f'--dataset={char_data}', f'--out_dir={out}',
                              '--init_from=resume', '--max_iters=1'], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert 'eval 0 |' in resumed.stdout and 'eval 1 |' in resumed.stdout  # the interrupted evaluation is redone


def children(pid):
    with open(f'/proc/{pid}/task/{pid}/children') as f:
        return [int(p) for p in f.read().split()]


def test_sigterm_to_the_demo_leaves_no_stage_running(tmp_path):
    demo = start(['script/demo.py', '--quick', '--out_dir', tmp_path])
    try:
        wait_for_line(demo, '[teacher]')
        deadline = time.time() + 60
        while not children(demo.pid) and time.time() < deadline:
            time.sleep(0.05)
        stage = children(demo.pid)
        assert stage, 'the teacher stage did not start'
        demo.send_signal(signal.SIGTERM)
        out, err = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert demo.returncode == 130, err
    assert 'stopped by SIGTERM' in err and err.strip().endswith('interrupted')
    assert not os.path.exists(f'/proc/{stage[0]}')  # the stage ended before the demo did
    assert '[decompose]' not in out and not (tmp_path / 'student').exists()  # no stage after it



def test_a_signal_while_a_stage_starts_still_reaches_it(tmp_path, monkeypatch):
    # SIGTERM lands after the stage's process exists but before run_script has registered it
    sys.path.insert(0, os.path.join(ROOT, 'script'))
    import stages
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return proc

    monkeypatch.setattr(stages.subprocess, 'Popen', popen)
    stage = tmp_path / 'stage.py'
    stage.write_text("import time\nprint('started', flush=True)\ntime.sleep(120)\n")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.time()
    try:
        with pytest.raises(KeyboardInterrupt):
            stages.run_script([stage], tmp_path / 'stage.log')
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        stages.STOP.clear()
    assert time.time() - t0 < 60  # the stage got the signal: it did not sleep its 120 s
    assert not stages.RUNNING and not stages.STARTING

if __name__ == '__main__':
    # the table of these cases as they run on this commit: PYTHONPATH=. python tests/test_outputs.py
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix='test_outputs-'))
    workspace(d)
    table = {**cases(d), **good_cases(d)}
    with contextlib.ExitStack() as held:
        for rel in LOCKED:
            held.enter_context(output_lock(d / rel))
        res = run_harness(d, table)
    print("| case | command (WS: the workspace) | exit | error line | files changed |\n|---|---|---|---|---|")
    for name, (args, _) in table.items():
        code, err, changed = res[name]
        cmd = ' '.join(map(str, args)).replace(str(d), 'WS')
        line = err.strip().splitlines()[-1].replace(str(d), 'WS').replace('|', '\\|') if code else '-'
        files = ', '.join(changed) if len(changed) <= 2 else f"{len(changed)} files: {changed[0]}, ..."
        print(f"| {name} | `{cmd}` | {code} | {line} | {files or 'none'} |")
    shutil.rmtree(d)
