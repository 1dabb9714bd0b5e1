"""Bad input across the scripts, as a new user types it. Every case runs a real command line (all in
one harness interpreter, so torch is imported once; two of them also as real processes) and must
end with exactly one `error: ...` line naming the problem, a non-zero exit, no traceback, every
file of the workspace byte-identical to before and no temporary file left behind."""
import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from checkpoint import save_checkpoint
from cli_runs import HARNESS
from conftest import ROOT
from model import GPT, GPTConfig


def tiny(vocab_size, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=vocab_size, **kw))


def save(model, path, **extra):
    save_checkpoint({'model': model.state_dict(), 'model_args': vars(model.config).copy(), **extra}, path)
    return str(path)


def workspace(d):
    """Files the cases read (and must leave as they were)."""
    chars = d / 'chars'  # a small character dataset, as data/shakespeare_char writes it
    chars.mkdir()
    ids = np.random.default_rng(0).integers(0, 40, 5000).astype(np.uint16)
    ids.tofile(chars / 'train.bin')
    ids[:1000].tofile(chars / 'val.bin')
    with open(chars / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': 40, 'itos': {i: chr(65 + i) for i in range(40)}}, f)
    bad_meta = d / 'bad_meta'
    shutil.copytree(chars, bad_meta)
    (bad_meta / 'meta.pkl').write_bytes(b'not a pickle')
    f = dict(
        gpt2=save(tiny(50257), d / 'gpt2_tiny.pt'),          # GPT-2's vocabulary
        nameless=save(tiny(100), d / 'vocab100.pt'),          # 100 ids, no vocabulary stored
        kron=save(tiny(50257, mlp='kron', kron_dim1=16, kron_dim2=16), d / 'kron.pt'),
        existing=d / 'existing.pt', file=d / 'a_file', empty=d / 'empty.txt', text=d / 'text.txt',
        dir=d / 'a_dir', chars=chars, bad_meta=bad_meta, prepared=d / 'prepared',
    )
    f['existing'].write_bytes(b'a result the user wants to keep')
    f['file'].write_text('in the way')
    f['empty'].write_text('')
    f['text'].write_text('The tower is 324 metres tall.\n' * 40)
    f['dir'].mkdir()
    (f['dir'] / 'keep.txt').write_text('keep')
    f['prepared'].mkdir()
    for name in ('train.bin', 'val.bin', 'meta.pkl'):
        shutil.copy(chars / name, f['prepared'] / name)
    # a kron_decompose.py output in a run folder: a checkpoint without training state
    (d / 'run').mkdir()
    shutil.copy(f['kron'], d / 'run' / 'ckpt.pt')
    # HF directories: one without config.json, one whose config does not fit its weights
    (d / 'no_config').mkdir()
    (d / 'no_config' / 'model.safetensors').write_bytes(b'x')
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=300)).save_pretrained(d / 'mismatch')
    cfg = json.loads((d / 'mismatch' / 'config.json').read_text())
    (d / 'mismatch' / 'config.json').write_text(json.dumps(dict(cfg, n_embd=32)))
    # config files: a syntax error on line 2, an unknown name on line 3
    (d / 'syntax.py').write_text("batch_size = 4\nmax_iters = = 3\n")
    (d / 'name.py').write_text("batch_size = 4\nmax_iters = 3\nlr_decay_iters = max_iter\n")
    # evaluation data in the original layouts, each broken one way
    for sub, rel, content in (('jsonl_bad', 'lambada/lambada_test.jsonl', '{"text": "ok"}\n{"text": \n'),
                              ('jsonl_no_text', 'lambada/lambada_test.jsonl', '{"passage": "no text key"}\n'),
                              ('binary', 'wikitext-103-v1/wiki.test.tokens', None)):
        path = d / sub / rel
        path.parent.mkdir(parents=True)
        if content is None:
            path.write_bytes(bytes(range(256)) * 4)
        else:
            path.write_text(content)
    # OpenWebText local files: an empty document, a jsonl with a broken second line
    (d / 'owt_empty.txt').write_text('')
    (d / 'owt_bad.jsonl').write_text('{"text": "a document"}\nnot json\n')
    return f


TINY = ['train.py', 'config/test_tiny.py', '--max_iters=1', '--eval_iters=1']


def cases(d, f):
    """name -> (argv, text the error line must contain)."""
    return {
        # 1. destinations are checked before any work
        'eval_json_onto_directory': (['perplexity_eval.py', f['gpt2'], '--text_file', f['text'], '--json', f['dir']],
                                     'is a directory'),
        'eval_json_under_a_file': (['perplexity_eval.py', f['gpt2'], '--text_file', f['text'], '--json',
                                    f"{f['file']}/r.json"], 'is not a directory'),
        'train_out_dir_is_a_file': ([*TINY, f"--dataset={f['chars']}", f"--out_dir={f['file']}"],
                                    'exists and is not a directory'),
        'decompose_out_is_a_directory': (['kron_decompose.py', 16, 16, 1, '--from', f['gpt2'], '--out', f['dir']],
                                         'is a directory'),
        'decompose_out_under_a_file': (['kron_decompose.py', 16, 16, 1, '--from', f['gpt2'], '--out',
                                        f"{f['file']}/k.pt"], 'is not a directory'),
        'compress_out_is_a_directory': (['compress.py', 'lowrank', 2, '--from', f['gpt2'], '--out', f['dir']],
                                        'is a directory'),
        'export_out_dir_is_a_file': (['krony_to_gpt.py', f['kron'], f['file']], 'exists and is not a directory'),
        'prepare_out_dir_is_a_file': (['data/shakespeare_char/prepare.py', '--out_dir', f['file']],
                                      'exists and is not a directory'),
        'demo_out_dir_is_a_file': (['script/demo.py', '--quick', '--out_dir', f['file']],
                                   'exists and is not a directory'),
        'compare_out_is_a_file': (['script/compare.py', '--quick', '--out', f['file']], 'exists and is not a directory'),
        'bench_json_onto_directory': (['script/bench.py', '--quick', '--json', f['dir']], 'is a directory'),
        'gpu_check_out_is_a_file': (['script/gpu_check.py', '--device', 'cpu', '--out', f['file']],
                                    'exists and is not a directory'),
        'mingpt_tricks_out_is_a_file': (['script/mingpt_tricks.py', '--quick', '--out', f['file']],
                                        'exists and is not a directory'),
        # 2. no silent overwrite; no empty or malformed input
        'decompose_existing_out': (['kron_decompose.py', 16, 16, 1, '--from', f['gpt2'], '--out', f['existing']],
                                   'exists; pass --force'),
        'compress_existing_out': (['compress.py', 'lowrank', 2, '--from', f['gpt2'], '--out', f['existing']],
                                  'exists; pass --force'),
        'export_into_non_empty_dir': (['krony_to_gpt.py', f['kron'], f['dir']], 'is not empty; pass --force'),
        'prepare_empty_source': (['data/shakespeare_char/prepare.py', '--source', f['empty'], '--out_dir',
                                  f['prepared']], 'is empty'),
        'prepare_wikitext_empty_source': (['data/wikitext103_valid_char/prepare.py', '--source', f['empty'],
                                           '--out_dir', f['prepared']], 'is empty'),
        'prepare_missing_source': (['data/shakespeare/prepare.py', '--source', d / 'nope.txt', '--out_dir',
                                    f['prepared']], 'does not exist'),
        'openwebtext_empty_document': (['data/openwebtext/prepare.py', d / 'owt_empty.txt', '--out_dir', f['prepared'],
                                        '--num_proc', 1], 'is empty'),
        'openwebtext_malformed_jsonl': (['data/openwebtext/prepare.py', d / 'owt_bad.jsonl', '--out_dir', f['prepared'],
                                         '--num_proc', 1], 'line 2'),
        # 4. a local path or a hub name, said at once
        'sample_mistyped_directory': (['sample.py', d / 'student_hff'], 'does not exist'),
        'train_init_from_missing_dir': ([*TINY, f"--dataset={f['chars']}", f"--out_dir={d / 'new_run'}",
                                         '--init_from=missing_dir'], 'is not a local path'),
        'decompose_hub_name_offline': (['kron_decompose.py', 768, 768, 1, '--out', d / 'k.pt'],
                                       'HF_HUB_OFFLINE=1'),
        'eval_directory_without_config': (['perplexity_eval.py', d / 'no_config', '--text_file', f['text']],
                                          'without config.json'),
        'eval_config_that_does_not_fit': (['perplexity_eval.py', d / 'mismatch', '--text_file', f['text']],
                                          'cannot load a GPT-2 model'),
        # 5. a vocabulary that is not GPT-2's and not known
        'export_unknown_vocabulary': (['krony_to_gpt.py', f['nameless'], d / 'hf_out'], '--no-tokenizer'),
        'eval_unknown_vocabulary': (['perplexity_eval.py', f['nameless'], '--text_file', f['text']],
                                    'no tokenizer is known'),
        'sample_unknown_vocabulary': (['sample.py', f['nameless']], 'no tokenizer is known'),
        # 6. train.py
        'config_syntax_error': (['train.py', d / 'syntax.py'], 'syntax.py, line 2'),
        'config_unknown_name': (['train.py', d / 'name.py'], "name.py, line 3: NameError"),
        'train_without_cuda': ([*TINY, f"--dataset={f['chars']}", f"--out_dir={d / 'new_run'}", '--device=cuda'],
                               'sees no CUDA GPU'),
        'train_misspelt_device': ([*TINY, f"--dataset={f['chars']}", f"--out_dir={d / 'new_run'}", '--device=gpu'],
                                  'is not a torch device'),
        'resume_a_decomposed_checkpoint': ([*TINY, f"--dataset={f['chars']}", f"--out_dir={d / 'run'}",
                                            '--init_from=resume'], f"--init_from={d / 'run' / 'ckpt.pt'}"),
        # 7. data and evaluation files
        'eval_malformed_jsonl_line': (['perplexity_eval.py', f['gpt2'], 'lambada_openai', '--data_dir', d / 'jsonl_bad'],
                                      'lambada_test.jsonl, line 2: not JSON'),
        'eval_jsonl_without_text': (['perplexity_eval.py', f['gpt2'], 'lambada_openai', '--data_dir',
                                     d / 'jsonl_no_text'], 'line 1: no "text"'),
        'eval_binary_wikitext': (['perplexity_eval.py', f['gpt2'], 'wiki103', '--data_dir', d / 'binary'],
                                 'is not UTF-8'),
        'eval_empty_text_file': (['perplexity_eval.py', f['gpt2'], '--text_file', f['empty']], 'is empty'),
        'train_corrupt_meta': ([*TINY, f"--dataset={f['bad_meta']}", f"--out_dir={d / 'new_run'}"],
                               'not a readable meta.pkl'),
    }


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp('bad')
    f = workspace(d)
    table = cases(d, f)
    argv = {name: [str(a) for a in args] for name, (args, _) in table.items()}
    out = subprocess.run([sys.executable, '-c', HARNESS, json.dumps(argv), str(d)], cwd=ROOT, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.splitlines()[-1])
    # two of them as real processes too: the harness reports what a shell would see
    for name in ('decompose_existing_out', 'train_init_from_missing_dir'):
        real = subprocess.run([sys.executable, *argv[name]], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert [real.returncode, real.stderr] == res[name][:2], name
    return table, res, d


CASE_NAMES = list(cases(pathlib.Path('/ws'), {k: k for k in (
    'gpt2', 'nameless', 'kron', 'existing', 'file', 'empty', 'text', 'dir', 'chars', 'bad_meta', 'prepared')}))


@pytest.mark.parametrize('name', CASE_NAMES)
def test_bad_input_fails_cleanly(results, name):
    table, res, d = results
    code, err, changed = res[name]
    lines = err.strip().splitlines()
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert table[name][1] in lines[0], (table[name][1], lines[0])
    assert changed == [], changed  # nothing written, nothing replaced, no temporary file


def test_the_hub_probe_answers_offline_without_the_offline_flag(tmp_path):
    """Without HF_HUB_OFFLINE, a hub name on a machine with no network fails with the same line
    (the probe decides; no minutes of retries)."""
    env = {k: v for k, v in os.environ.items() if k not in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE')}
    env['HF_ENDPOINT'] = 'http://127.0.0.1:9'  # a port where nothing listens: unreachable at once
    out = subprocess.run([sys.executable, 'kron_decompose.py', '768', '768', '1', '--out', str(tmp_path / 'k.pt')],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1 and out.stderr.count('\n') == 1, out.stderr
    assert 'hub cannot be reached' in out.stderr and os.listdir(tmp_path) == []
