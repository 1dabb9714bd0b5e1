"""
Fold a Krony-PT (or low-rank, or dense) checkpoint into a standard Hugging Face GPT-2 directory.

    python krony_to_gpt.py CHECKPOINT OUT_DIR [--force]

    python krony_to_gpt.py checks/kron_384_3072_1_prune.pt out/krony-96m
    python perplexity_eval.py out/krony-96m

The model is rebuilt from the checkpoint's model_args; each MLP matrix sum_f s_f A_f (x) B_f
(or U @ V) becomes one dense matrix, and OUT_DIR gets config.json, model.safetensors and the GPT-2
tokenizer files, so AutoTokenizer / AutoModelForCausalLM load it alone, offline. The folded model
has GPT-2's full parameter count: the saving lives in the factored checkpoint. OUT_DIR must be
empty or absent unless --force; it is written next to itself and renamed into place, so a failure
never leaves it half-written.
"""

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace

import torch

from model import GPT, load_model

CONV1D = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')


def copy_parameters(model, skip=()):
    """{name: new Parameter} for every parameter whose name does not start with a prefix in skip;
    one Parameter shared by several names (GPT-2's tied wte / lm_head) stays one new Parameter."""
    new, out = {}, {}
    for k, v in model.state_dict(keep_vars=True).items():
        if not k.startswith(tuple(skip)):
            if id(v) not in new:
                new[id(v)] = torch.nn.Parameter(v.detach().clone(), requires_grad=v.requires_grad)
            out[k] = new[id(v)]
    return out


def to_dense_gpt(model):
    """A dense GPT (mlp='dense') computing the same function: every MLP matrix folded to (out, in)."""
    c = model.config
    config = replace(c, mlp='dense', kron_dim1=0, kron_dim2=0, kron_factors=1, kron_scalers=False,
                     lowrank_rank=0)
    with torch.device('meta'):  # every parameter is assigned below
        dense = GPT(config)
    dtype = model.transformer.wte.weight.dtype
    sd = copy_parameters(model, skip=[f'{name}.' for name, _ in model.mlp_linears()])
    with torch.no_grad():
        for name, lin in model.mlp_linears():
            # fold in float64: the sum of F products is rounded once, to the model's dtype
            W = copy.deepcopy(lin).double().dense_weight()  # (in, out)
            sd[f'{name}.weight'] = torch.nn.Parameter(W.t().to(dtype).contiguous())
            if lin.bias is not None:
                sd[f'{name}.bias'] = torch.nn.Parameter(lin.bias.detach().clone())
    dense.load_state_dict(sd, assign=True)  # strict: the folded model is complete
    assert not any(t.is_meta for t in dense.buffers()), "GPT gained a buffer that to_dense_gpt must fill"
    return dense.train(model.training)


def hf_config(config):
    from transformers import GPT2Config
    from gpt2_tokenizer import EOT
    eot = EOT if config.vocab_size > EOT else None  # tiny test vocabularies have no <|endoftext|>
    return GPT2Config(vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
                      n_layer=config.n_layer, n_head=config.n_head, n_inner=None,
                      activation_function='gelu_new', layer_norm_epsilon=config.layer_norm_epsilon,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=eot, eos_token_id=eot, tie_word_embeddings=True)


def check_representable(config):
    if config.time_weighting or config.time_mixing:
        raise ValueError("time_weighting / time_mixing change the attention itself; GPT2LMHeadModel "
                         "cannot represent them, so this model has no HF GPT-2 export (evaluate the "
                         "checkpoint directly)")


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
            new[k] = sd[k].t() if k.endswith(CONV1D) else sd[k]  # HF Conv1D stores (in, out)
        elif k.endswith('.bias') and not model.config.bias:
            new[k] = torch.zeros_like(v)  # bias=False is the same function as a zero bias
        else:
            raise ValueError(f"the HF model expects {k}, which this model does not have")
    hf.load_state_dict(new, strict=True)
    return hf.eval()


def check_out_dir(out_dir, force):
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ValueError(f"{out_dir} exists and is not a directory")
        if os.listdir(out_dir) and not force:
            raise ValueError(f"{out_dir} is not empty; pass --force to replace it")


def export(model, out_dir, force=False):
    """Write the HF GPT-2 directory for `model` (weights, config, tokenizer) to out_dir."""
    from gpt2_tokenizer import hf_tokenizer
    check_out_dir(out_dir, force)
    hf = to_hf(model)
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.tmp', dir=parent)
    old = None
    try:
        hf.save_pretrained(tmp)
        hf_tokenizer().save_pretrained(tmp)
        # mkdtemp (and the safetensors writer) create owner-only files; give the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for f in os.listdir(tmp):
            os.chmod(os.path.join(tmp, f), 0o666 & ~umask)
        if os.path.exists(out_dir):
            old = tmp + '.old'
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    except BaseException:
        if old is not None and not os.path.exists(out_dir):
            os.rename(old, out_dir)  # put the previous directory back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)
    return hf


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('checkpoint', metavar='CHECKPOINT', help='project checkpoint (kron_decompose.py, train.py)')
    p.add_argument('out_dir', metavar='OUT_DIR')
    p.add_argument('--force', action='store_true', help='replace a non-empty OUT_DIR')
    args = p.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise ValueError(f"checkpoint {args.checkpoint} does not exist (a .pt file written by "
                         f"kron_decompose.py or train.py)")
    check_out_dir(args.out_dir, args.force)

    t0 = time.time()
    model, _ = load_model(args.checkpoint)
    check_representable(model.config)
    c = model.config
    kind = {'kron': f"kron {c.kron_dim1} {c.kron_dim2} {c.kron_factors}{' + scalers' if c.kron_scalers else ''}",
            'lowrank': f"low-rank {c.lowrank_rank or 'max'}", 'dense': 'dense'}[c.mlp]
    print(f"{args.checkpoint}: {kind} MLP, {c.n_layer} layers, n_embd {c.n_embd}, "
          f"{model.num_params('paper'):,} parameters (paper count)")
    hf = export(model, args.out_dir, args.force)
    n_hf = sum(p.numel() for p in hf.parameters())
    print(f"wrote {args.out_dir}: GPT2LMHeadModel, {n_hf:,} parameters folded, in {time.time() - t0:.1f} s")


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
