"""
Project checkpoints, and models loaded from any source: a checkpoint file, a save_pretrained
directory or a Hugging Face hub name (sources.py says which a name is).

    from checkpoint import load_model, save_checkpoint
    model, ckpt = load_model('checks/kron_768_768_1_vl.pt')   # ckpt is None for HF models
    model, _ = load_model('out/krony-81m')                     # krony_to_gpt.py's export, folded or --factored
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config)}, path)

A checkpoint is a torch file {'model': state_dict, 'model_args': GPTConfig fields, ...}; the model
is always rebuilt from its model_args, never guessed from tensor shapes.
"""

import os
from dataclasses import fields

import torch

from outputs import atomic_write
from factored import KINDS
from model import GPT, GPTConfig
from sources import hub_reachable, in_hub_cache, model_source

def config_from_args(model_args):
    known = {f.name for f in fields(GPTConfig)}
    unknown = set(model_args) - known
    if unknown:
        raise ValueError(f"model_args has unknown keys {sorted(unknown)}; was it written by a newer version?")
    return GPTConfig(**model_args)


def save_checkpoint(obj, path):
    """torch.save through files.atomic_write: a crash or a full disk never leaves a truncated
    checkpoint in place of the last good one."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, map_location='cpu'):
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is not a readable torch file ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or 'model' not in ckpt or 'model_args' not in ckpt:
        raise ValueError(f"{path} is not a GPT checkpoint of this project (no 'model' and 'model_args')")
    return ckpt


def model_from_checkpoint(ckpt, path='checkpoint', **overrides):
    """The GPT of a checkpoint dict; overrides change model_args fields that hold no weights (dropout)."""
    try:
        model = GPT(config_from_args(dict(ckpt['model_args'], **overrides)))
        # torch.compile prefixes parameter names with _orig_mod.
        model.load_state_dict({k.removeprefix('_orig_mod.'): v for k, v in ckpt['model'].items()})
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: weights do not match its model_args ({str(e).strip().splitlines()[0]})") from None
    return model


def check_finite(model, source):
    """ValueError naming the first weight tensor holding NaN or Inf, and how many: checked before
    any fit, which would fail on them (an SVD) or spread them through a whole factor."""
    for name, p in model.named_parameters():
        bad = int((~torch.isfinite(p)).sum())
        if bad:
            raise ValueError(f"{source}: {name} has {bad:,} non-finite value{'s' if bad > 1 else ''} (NaN or Inf) "
                             f"of {p.numel():,}; the model is broken, start from a good checkpoint")


# -----------------------------------------------------------------------------
# a factored Hugging Face export (krony_to_gpt.py --factored)

FACTORED_MODEL_TYPE = 'krony_gpt2'  # modeling_krony.KronyGPT2Config.model_type


def hf_dir_config(path):
    """A save_pretrained directory's config.json as a dict, or ValueError naming it."""
    import json
    try:
        with open(os.path.join(path, 'config.json'), encoding='utf-8') as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}/config.json is not readable JSON ({type(e).__name__})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}/config.json does not hold a JSON object")
    return config


def load_factored_dir(path, **overrides):
    """The GPT of a factored export, read from its config.json and safetensors directly (its own
    code, which transformers runs with trust_remote_code=True, is not needed here)."""
    from safetensors.torch import load_file
    hc = hf_dir_config(path)
    files = sorted(f for f in os.listdir(path) if f.startswith('model') and f.endswith('.safetensors'))
    try:
        args = dict(block_size=hc['n_positions'], vocab_size=hc['vocab_size'], n_layer=hc['n_layer'],
                    n_head=hc['n_head'], n_embd=hc['n_embd'], layer_norm_epsilon=hc['layer_norm_epsilon'],
                    bias=hc['mlp_bias'], dropout=0.0, **{k: hc[k] for k in KINDS[hc['mlp']].CONFIG_FIELDS},
                    mlp=hc['mlp'])
        if not files:
            raise ValueError("no model*.safetensors")
        sd = {}
        for f in files:
            sd.update(load_file(os.path.join(path, f)))
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a readable factored export ({type(e).__name__}: {e}); "
                         f"write it again with krony_to_gpt.py --factored") from None
    ckpt = {'model_args': {**args, **overrides}, 'model': hf_to_gpt_state(sd, args['bias'])}
    return model_from_checkpoint(ckpt, path)


def hf_to_gpt_state(sd, bias):
    """GPT's state dict from a factored export's: attention weights back from GPT-2's Conv1D
    layout, the tied output layer, and without the zero biases a bias=False model was given."""
    out = {}
    for k, v in sd.items():
        if k.endswith(('.attn.bias', '.attn.masked_bias')) or (not bias and k.endswith('.bias')):
            continue
        out[k] = v.t() if k.endswith(('attn.c_attn.weight', 'attn.c_proj.weight')) else v
    out.setdefault('lm_head.weight', out.get('transformer.wte.weight'))
    return out


def load_model(spec, map_location='cpu', **overrides):
    """(model, checkpoint dict or None) from a checkpoint file, an HF directory or a hub name."""
    kind, where = model_source(spec)
    if kind == 'checkpoint':
        ckpt = load_checkpoint(where, map_location)
        return model_from_checkpoint(ckpt, where, **overrides), ckpt
    if kind == 'hf_dir' and hf_dir_config(where).get('model_type') == FACTORED_MODEL_TYPE:
        return load_factored_dir(where, **overrides).to(map_location), None
    if kind == 'hub' and in_hub_cache(where) and not hub_reachable():
        os.environ['HF_HUB_OFFLINE'] = '1'  # use the cache at once instead of retrying the hub
    return GPT.from_pretrained(where, **overrides), None
