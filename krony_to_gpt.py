"""
Fold a Krony-PT (or low-rank, or dense) checkpoint into a standard Hugging Face GPT-2 directory.

    python krony_to_gpt.py CHECKPOINT OUT_DIR [--force] [--no-tokenizer] [--factored]

    python krony_to_gpt.py checks/kron_384_3072_1_prune.pt out/krony-96m
    python perplexity_eval.py out/krony-96m
    python krony_to_gpt.py checks/kron_768_768_1_vl.pt out/krony-81m-factored --factored

The model is rebuilt from the checkpoint's model_args; each MLP matrix sum_f s_f A_f (x) B_f
(or U @ V) becomes one dense matrix, and OUT_DIR gets config.json, model.safetensors and the
tokenizer the model was trained with: GPT-2's (tokenizer.json, vocab.json, merges.txt) or, for a
character dataset, a tokenizer.json of its characters (stored in the checkpoint by train.py), so
AutoTokenizer / AutoModelForCausalLM load it alone, offline. The folded model has GPT-2's full
parameter count: the saving lives in the factored checkpoint. OUT_DIR must be empty or absent
unless --force, and apart from the checkpoint; it is written next to itself and renamed into
place (an empty OUT_DIR, such as a mount point, is filled in place), so a failure never leaves it
half-written, and a replaced OUT_DIR is removed only once the new one is in place.

--factored keeps the MLP matrices as the checkpoint holds them (A_f, B_f and scalers, or U and V):
OUT_DIR gets them in model.safetensors, config.json with the MLP's kind and shape and an auto_map,
and the code that computes them (modeling_krony.py, a GPT2LMHeadModel with factored.py's MLP,
factored.py itself and its kron_fast.py), so AutoModelForCausalLM.from_pretrained(OUT_DIR, trust_remote_code=True) loads
it offline anywhere transformers is installed, and this project's scripts read it directly.
"""

import argparse
import copy
import os
import shutil
import time
from dataclasses import replace

import torch

import errors
from checkpoint import load_model
from factored import KINDS
from outputs import atomic_dir, check_destination, output_lock
from model import HF_CONV1D, convert_mlps, with_mlp
from tokenizer import tokenizer_for, write_hf_tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))


def to_dense_gpt(model):
    """A dense GPT (mlp='dense') computing the same function: every MLP matrix folded to (out, in)."""
    def fold(name, lin, dense_lin):
        # fold in float64: the sum of F products is rounded once, to the model's dtype
        return {'weight': copy.deepcopy(lin).double().dense_weight().t()}
    return convert_mlps(model, with_mlp(model.config, 'dense'), fold)


def gpt2_fields(config):
    """GPT2Config's keyword arguments for a GPTConfig."""
    from tokenizer import EOT
    eot = EOT if config.vocab_size > EOT else None  # tiny test vocabularies have no <|endoftext|>
    return dict(vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
                n_layer=config.n_layer, n_head=config.n_head, n_inner=None,
                activation_function='gelu_new', layer_norm_epsilon=config.layer_norm_epsilon,
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                bos_token_id=eot, eos_token_id=eot, tie_word_embeddings=True)


def hf_config(config):
    from transformers import GPT2Config
    return GPT2Config(**gpt2_fields(config))


def check_representable(config):
    """ValueError unless GPT2LMHeadModel computes what this config's attention computes: every form
    of minGPT-tuned's tricks (time_weighting, time_mixing: 'full', 'toeplitz', 'shift', ...) changes it."""
    tricks = [f"{k}={getattr(config, k)!r}" for k in ('time_weighting', 'time_mixing') if getattr(config, k)]
    if tricks:
        raise ValueError(f"{' and '.join(tricks)} change the attention itself; GPT2LMHeadModel cannot "
                         f"represent them, so this model has no HF GPT-2 export (evaluate the checkpoint directly)")


def to_hf(model):
    """GPT2LMHeadModel with the same logits as `model` (Kronecker, low-rank or dense)."""
    from transformers import GPT2LMHeadModel
    check_representable(model.config)
    dense = model if model.config.mlp == 'dense' else to_dense_gpt(model)
    sd = dense.state_dict()
    hf = GPT2LMHeadModel(hf_config(model.config))
    new = {}
    for k, v in hf.state_dict().items():
        if k in sd:
            new[k] = sd[k].t() if k.endswith(HF_CONV1D) else sd[k]
        elif k.endswith('.bias') and not model.config.bias:
            new[k] = torch.zeros_like(v)  # bias=False is the same function as a zero bias
        else:
            raise ValueError(f"the HF model expects {k}, which this model does not have")
    hf.load_state_dict(new, strict=True)
    return hf.eval()


# the code files of a factored export: the model class and the MLP matrices it imports
FACTORED_CODE = ('modeling_krony.py', 'factored.py', 'kron_fast.py')
ATTN_CONV1D = tuple(k for k in HF_CONV1D if k.startswith('attn.'))  # the MLP's own layers keep their layout


def used_ranks(model):
    """A low-rank model with every matrix at one rank, the largest one in use: InRank grows each
    matrix's rank on its own, and one config field holds one rank. The columns of U and rows of V
    a matrix did not use are zero, so U @ V is the trained product."""
    def pad(name, lin, new):
        U, V = lin.factors()
        r_max = new.U.shape[1]
        return {'U': torch.cat([U, U.new_zeros(U.shape[0], r_max - U.shape[1])], 1),
                'V': torch.cat([V, V.new_zeros(r_max - V.shape[0], V.shape[1])], 0),
                'active_rank': torch.tensor(r_max)}
    r = max(lin.rank for _, lin in model.mlp_linears())
    if all(lin.U.shape[1] == r for _, lin in model.mlp_linears()):
        return model
    return convert_mlps(model, replace(model.config, lowrank_rank=r), pad)


def to_hf_factored(model):
    """modeling_krony's KronyGPT2LMHeadModel with the same logits as `model`, its MLP matrices the
    model's own factors (or dense matrices), unchanged; GPT-2's Conv1D layout elsewhere."""
    from modeling_krony import MLP_FIELDS, KronyGPT2Config, KronyGPT2LMHeadModel
    check_representable(model.config)
    if model.config.mlp == 'lowrank':
        model = used_ranks(model)
    c = model.config
    config = KronyGPT2Config(**gpt2_fields(c), **{k: getattr(c, k) for k in MLP_FIELDS}, mlp_bias=c.bias)
    config.auto_map = {'AutoConfig': 'modeling_krony.KronyGPT2Config',
                       'AutoModelForCausalLM': 'modeling_krony.KronyGPT2LMHeadModel'}
    hf = KronyGPT2LMHeadModel(config)
    sd = model.state_dict()
    new = {}
    for k, v in hf.state_dict().items():
        if k in sd:
            new[k] = sd[k].t() if k.endswith(ATTN_CONV1D) else sd[k]
        elif k.endswith('.bias') and not c.bias:
            new[k] = torch.zeros_like(v)  # bias=False is the same function as a zero bias
        else:
            raise ValueError(f"the factored HF model expects {k}, which this model does not have")
    hf.load_state_dict(new, strict=True)
    return hf.eval()


def export(model, out_dir, force=False, tok=None, factored=False):
    """Write the HF GPT-2 directory for `model` to out_dir: weights, config and, unless tok is
    None, the tokenizer files (tokenizer.py's GPT2BPE or CharTokenizer). factored: keep the MLP
    matrices as they are, with the code that computes them (FACTORED_CODE) beside the weights."""
    from transformers.utils import logging
    logging.disable_progress_bar()  # transformers 5 draws a bar for a one-file save
    hf = to_hf_factored(model) if factored else to_hf(model)
    with atomic_dir(out_dir, force) as tmp:
        hf.save_pretrained(tmp)
        if factored:
            for name in FACTORED_CODE:
                shutil.copyfile(os.path.join(HERE, name), os.path.join(tmp, name))
        if tok is not None:
            write_hf_tokenizer(tok, tmp, model_max_length=model.config.block_size)
    return hf


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('checkpoint', metavar='CHECKPOINT', help='project checkpoint (kron_decompose.py, train.py)')
    p.add_argument('out_dir', metavar='OUT_DIR')
    p.add_argument('--force', action='store_true', help='replace a non-empty OUT_DIR')
    p.add_argument('--no-tokenizer', action='store_true',
                   help='write the weights and config only (for a model whose tokenizer is not known)')
    p.add_argument('--factored', action='store_true',
                   help="keep the MLP factors: a smaller directory that loads with trust_remote_code=True")
    args = p.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise ValueError(f"checkpoint {args.checkpoint} does not exist (a .pt file written by "
                         f"kron_decompose.py or train.py)")
    check_destination(args.out_dir, args.force, kind='dir', inputs=[args.checkpoint], replace=args.force)
    with output_lock(args.out_dir):
        convert(args)


def convert(args):
    t0 = time.time()
    model, ckpt = load_model(args.checkpoint)
    check_representable(model.config)
    try:
        tok = None if args.no_tokenizer else tokenizer_for(model, ckpt)
    except ValueError as e:
        raise ValueError(f"{e}; pass --no-tokenizer to export the weights alone") from None
    c = model.config
    print(f"{args.checkpoint}: {KINDS[c.mlp].describe(c)} MLP, {c.n_layer} layers, n_embd {c.n_embd}, "
          f"{model.num_params('paper'):,} parameters (paper count)")
    hf = export(model, args.out_dir, args.force, tok, args.factored)
    n_hf = sum(p.numel() for p in hf.parameters())
    how = 'factored, load with trust_remote_code=True' if args.factored else 'folded'
    print(f"wrote {args.out_dir}: {type(hf).__name__}, {n_hf:,} parameters {how}, tokenizer: "
          f"{tok.describe() if tok else 'none'}, in {time.time() - t0:.1f} s")


if __name__ == '__main__':
    errors.run(main)
