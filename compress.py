"""
Initialise the non-Kronecker students from a trained model: low-rank MLPs by truncated SVD,
InRank's second stage, and layer truncation (DistilGPT2-style).

    python compress.py lowrank RANK [--from gpt2|HF_DIR|CHECKPOINT] [--out PATH] [--force]
                               [--calib TEXT_FILE_OR_DATASET [--calib_tokens N]]
    python compress.py lowrank found --from checks/inrank_stage1/ckpt.pt [--buffer N] [--out PATH | --resume_dir DIR]
    python compress.py truncate [--layers 0,2,4,7,9,11] [--from gpt2|HF_DIR|CHECKPOINT] [--out PATH]

    python compress.py lowrank 154        # GPT-2 small: about the parameters of Krony-PT's 768 768 1
    python compress.py truncate           # DistilGPT2's student init: layers 0, 2, 4, 7, 9, 11 of gpt2

`lowrank RANK`: every MLP matrix W (x @ W orientation) becomes U V with U = U_r sqrt(S_r) and
V = sqrt(S_r) Vh_r from W's SVD, the Frobenius-nearest rank-r matrix (Eckart-Young); the source
may be dense, Kronecker or low-rank (its dense_weight() is factorised). With --calib each matrix
is fitted to the activations it receives on training text instead (calib.aware_lowrank: the exact
minimiser of ||X (W - U V)||), and the errors on held-out calibration tokens are printed next to
the plain SVD's; the default name gains _calib.
`lowrank found`: InRank's stage 2 (see inrank.py): the same truncation of an InRank stage-1
checkpoint to the rank its growth found, the largest over the matrices of active rank minus the
buffer (read from the checkpoint's train config `inrank_buffer_modes`, or --buffer). With
--resume_dir DIR it writes DIR/ckpt.pt with stage 1's training state as InRank's stage 2 keeps
it: the step count (so the learning-rate schedule goes on), the AdamW state with the moments of
every factor sliced to the kept ranks (inrank.slice_moments), the loss scaler, the data order and
the RNG states; `python train.py config/baselines/inrank_stage2.py` continues it with --init_from=resume.
Without it the output is a fresh model that train.py starts from (init_from=PATH) with a new
optimizer.
`truncate`: a shallower model whose block i is the source's block LAYERS[i]; embeddings and the
final LayerNorm are copied. The default keeps n_layer // 2 evenly spaced layers, which for 12
layers gives DistilGPT2's 0, 2, 4, 7, 9, 11. Train it with distillation from the source:
    python train.py CONFIG --init_from=checks/truncate_0-2-4-7-9-11.pt --kd_teacher=gpt2
Everything not named above (attention, embeddings, LayerNorms, MLP biases, the attention tricks)
is copied. Outputs are checkpoints that train.py starts from (init_from=PATH), krony_to_gpt.py
exports and perplexity_eval.py evaluates.
"""

import argparse
import contextlib
import os
import time
from dataclasses import asdict, replace

import torch

import errors
from checkpoint import check_finite, load_model, save_checkpoint
from outputs import check_destination, output_lock
from model import GPT, convert_mlps, with_mlp
from tokenizer import stored_vocab


def svd_factors(W, rank):
    """(U (in, rank), V (rank, out)) with U @ V the nearest rank-`rank` matrix to W (in, out)."""
    Uf, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    root = S[:rank].sqrt()
    return Uf[:, :rank] * root, root[:, None] * Vh[:rank]


def check_rank(c, rank):
    limit = min(c.n_embd, c.mlp_width)
    if not 1 <= rank <= limit:
        raise ValueError(f"rank {rank} must be between 1 and min(n_embd, 4*n_embd) = {limit}")


def lowrank_model(model, rank):
    """(low-rank GPT, per-matrix relative Frobenius errors) from any GPT of this project."""
    c = model.config
    check_rank(c, rank)
    errors = []

    def factors(name, lin, new_lin):
        W = lin.dense_weight().detach().double()  # (in, out)
        U, V = svd_factors(W, rank)
        errors.append((name, ((W - U @ V).norm() / W.norm()).item()))
        return {'U': U, 'V': V, 'active_rank': torch.tensor(rank)}

    return convert_mlps(model, with_mlp(c, 'lowrank', lowrank_rank=rank), factors), errors


def aware_lowrank_model(model, rank, grams, damp=None):
    """(low-rank GPT, per-matrix rows) with every MLP matrix fitted to its activations:
    calib.aware_lowrank on the fit Gram matrix of grams (calib.mlp_grams of model) damped by damp
    (default calib.DAMP). Rows: name, the relative errors on the weights (rel_err) and on the
    held-out activations (act_err) of this fit and of the plain SVD's (rel_err_svd, act_err_svd),
    and the norms that weigh them into totals (w_norm, act_norm)."""
    from calib import DAMP, act_err, aware_lowrank, damped
    c = model.config
    check_rank(c, rank)
    rows = []

    def factors(name, lin, new_lin):
        W = lin.dense_weight().detach().double()  # (in, out)
        U, V = aware_lowrank(W, rank, damped(grams[name]['fit'], DAMP if damp is None else damp))
        U0, V0 = svd_factors(W, rank)
        C = grams[name]['held']
        rows.append(dict(name=name, rel_err=((W - U @ V).norm() / W.norm()).item(),
                         rel_err_svd=((W - U0 @ V0).norm() / W.norm()).item(), act_err=act_err(W, U @ V, C),
                         act_err_svd=act_err(W, U0 @ V0, C), w_norm=W.norm().item(),
                         act_norm=(W * (C @ W)).sum().item() ** 0.5))
        return {'U': U, 'V': V, 'active_rank': torch.tensor(rank)}

    return convert_mlps(model, with_mlp(c, 'lowrank', lowrank_rank=rank), factors), rows


def default_layers(n_layer):
    """n_layer // 2 evenly spaced layers, first and last included (DistilGPT2's for 12)."""
    k = max(1, n_layer // 2)
    if k == 1:
        return [0]
    return [int(i * (n_layer - 1) / (k - 1) + 0.5) for i in range(k)]


def truncate_model(model, layers):
    """A GPT whose block i is a copy of model's block layers[i]; everything else copied."""
    n = model.config.n_layer
    if not layers or len(set(layers)) != len(layers) or not all(0 <= i < n for i in layers):
        raise ValueError(f"layers {layers} must be distinct indices between 0 and {n - 1}")
    new = GPT(replace(model.config, n_layer=len(layers)))
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith('transformer.h.'):
            i, rest = k[len('transformer.h.'):].split('.', 1)
            if int(i) in layers:
                sd[f'transformer.h.{layers.index(int(i))}.{rest}'] = v
        else:
            sd[k] = v
    new.load_state_dict(sd, strict=True)
    return new


def stage2_rank(model, ckpt, buffer):
    """(rank, {matrix: rank found}) for InRank's stage 2 of a stage-1 checkpoint."""
    from inrank import ranks_found
    if buffer is None:
        buffer = (ckpt or {}).get('config', {}).get('inrank_buffer_modes')
        if buffer is None:
            raise ValueError("the source has no train config with inrank_buffer_modes "
                             "(not an InRank stage-1 checkpoint of train.py?); pass --buffer N")
    found = ranks_found(model, buffer)
    rank = max(found.values())
    if rank < 1:
        raise ValueError(f"active ranks minus the buffer {buffer} leave no rank ({found}); is --buffer right?")
    return rank, found


def stage2_state(ckpt, src, model, rank):
    """The train.py state of InRank's stage 2 from a stage-1 checkpoint `ckpt` of model `src`,
    for the truncated `model` (see the module docstring)."""
    from inrank import slice_moments
    if not ckpt or 'optimizer' not in ckpt:
        raise ValueError("--resume_dir needs a stage-1 checkpoint of train.py with its training state "
                         "(out_dir/ckpt.pt), not a model-only one")
    if ckpt.get('config', {}).get('freeze_pos_emb'):  # frozen tensors are not in the optimizer
        for m in (src, model):
            m.transformer.wpe.weight.requires_grad_(False)

    def order(m):  # the optimizer's parameters in train.py's order: (name, tensor)
        names = {id(p): n for n, p in m.named_parameters()}
        return [(names[id(p)], p) for g in m.configure_optimizers(0.0, 0.0, (0.9, 0.95)).param_groups
                for p in g['params']]
    saved = ckpt['optimizer']
    index = [i for g in saved['param_groups'] for i in g['params']]
    old, new = order(src), order(model)
    if len(index) != len(old):
        raise ValueError(f"the checkpoint's optimizer holds {len(index)} tensors, its model {len(old)}; "
                         f"was it written by this version of train.py?")
    factors = {f'{n}.{f}' for n, _ in src.mlp_linears() for f in ('U', 'V')}
    factor_of = {i: name.rsplit('.', 1)[-1] for i, (name, _) in zip(index, old) if name in factors}
    state = slice_moments(saved['state'], factor_of, rank)
    for i, (name, p) in zip(index, new):
        if i in state and state[i]['exp_avg'].shape != p.shape:
            raise ValueError(f"optimizer state of {name} is {tuple(state[i]['exp_avg'].shape)} after slicing, "
                             f"the parameter {tuple(p.shape)}")
    return {'optimizer': {'state': state, 'param_groups': saved['param_groups']}, 'scaler': ckpt['scaler'],
            'iter_num': ckpt['iter_num'], 'best_val_loss': float('inf'),  # the truncated model is a new one
            'rng': ckpt['rng'], 'data_rng': ckpt['data_rng'], 'config': ckpt.get('config', {})}


def parse_layers(text):
    try:
        return [int(t) for t in text.split(',')]
    except ValueError:
        raise ValueError(f"--layers {text!r} must be comma-separated layer indices, e.g. 0,2,4,7,9,11") from None


def calibrated_lowrank(src, ckpt, source, rank, spec, n_tokens, info):
    """compress.py lowrank RANK --calib: the activation-aware model, its errors printed next to
    the plain SVD's and kept in info."""
    from calib import CALIB_TOKENS, DAMP, calib_ids, mlp_grams
    grams = mlp_grams(src, calib_ids(spec, src, ckpt, source), n_tokens or CALIB_TOKENS)
    first = next(iter(grams.values()))
    print(f"calibration: C from {first['fit_tokens']:,} tokens of {spec} (damped by {DAMP:g} x its mean diagonal), "
          f"errors on {first['held_tokens']:,} held-out tokens")
    model, rows = aware_lowrank_model(src, rank, grams)
    info['calib'] = dict(source=spec, fit_tokens=first['fit_tokens'], held_tokens=first['held_tokens'], damp=DAMP)
    info['rel_err'] = {r['name']: r['rel_err'] for r in rows}
    info['calib_errors'] = rows
    cols = ('rel_err_svd', 'rel_err', 'act_err_svd', 'act_err')
    print("relative errors, plain SVD vs this fit: weights ||W - U V|| / ||W||, held-out activations "
          "||X (W - U V)|| / ||X W||")
    print(f"{'matrix':<28} {'weights svd':>11} {'fit':>8} {'act. svd':>8} {'fit':>8}")
    for r in rows:
        print(f"{r['name']:<28} {r[cols[0]]:11.4f} " + ' '.join(f"{r[k]:8.4f}" for k in cols[1:]))
    norms = ('w_norm', 'w_norm', 'act_norm', 'act_norm')
    total = [(sum((r[k] * r[n]) ** 2 for r in rows) / sum(r[n] ** 2 for r in rows)) ** 0.5 for k, n in zip(cols, norms)]
    print(f"{'total':<28} {total[0]:11.4f} " + ' '.join(f"{t:8.4f}" for t in total[1:]))
    return model, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    sub = p.add_subparsers(dest='method', required=True)
    lr = sub.add_parser('lowrank', help='truncated SVD of every MLP matrix')
    lr.add_argument('rank', help="rank of U V, or 'found' for InRank's stage 2 of a stage-1 checkpoint")
    lr.add_argument('--buffer', type=int, default=None, help="found: InRank's buffer_modes (default: from the checkpoint)")
    tr = sub.add_parser('truncate', help='keep a subset of the layers')
    tr.add_argument('--layers', default=None, help='comma-separated source layers (default: n_layer // 2 evenly spaced)')
    for s in (lr, tr):
        s.add_argument('--from', dest='source', default='gpt2', help='hub name, HF directory or checkpoint')
        s.add_argument('--out', default=None, help='default: a name under checks/ from the method')
        s.add_argument('--force', action='store_true', help='replace an existing --out file')
    lr.add_argument('--calib', metavar='TEXT_FILE_OR_DATASET', default=None,
                    help="RANK: fit each matrix to the inputs it receives on TRAINING text (a UTF-8 file, a prepared "
                         "dataset directory or name under data/, whose train.bin is read; never validation or test "
                         "data): U V = L^-T truncate(L^T W) for C = X^T X = L L^T, C damped by 0.01 x its mean "
                         "diagonal (calib.py); prints the errors on held-out calibration tokens next to the plain SVD's")
    lr.add_argument('--calib_tokens', type=int, default=None, metavar='N',
                    help='--calib: calibration tokens, held-out ones included (default 16384)')
    lr.add_argument('--resume_dir', default=None,
                    help="found: write DIR/ckpt.pt with stage 1's training state, for train.py --init_from=resume")
    args = p.parse_args(argv)
    if args.method == 'lowrank' and args.rank != 'found' and not args.rank.isdigit():
        raise ValueError(f"RANK must be a positive integer or 'found', not {args.rank!r}")
    resume_dir = getattr(args, 'resume_dir', None)
    if resume_dir and (args.rank != 'found' or args.out):
        raise ValueError("--resume_dir goes with 'lowrank found' and replaces --out (it writes DIR/ckpt.pt)")
    calib, calib_tokens = getattr(args, 'calib', None), getattr(args, 'calib_tokens', None)
    if calib and args.rank == 'found':
        raise ValueError("--calib goes with lowrank RANK, not 'found' (stage 2 keeps stage 1's factors)")
    if calib_tokens is not None and (not calib or calib_tokens < 1):
        raise ValueError("--calib_tokens must be a positive number and goes with --calib")
    layers = parse_layers(args.layers) if args.method == 'truncate' and args.layers else None
    # an output known now is checked and held before the model is loaded; one named after the
    # model (a rank found, the default layers) is checked once known
    out = args.out or (os.path.join(resume_dir, 'ckpt.pt') if resume_dir else None)
    if out:
        check_destination(out, args.force, inputs=[args.source, calib])
    with output_lock(out) if out else contextlib.nullcontext():
        compress(args, layers, resume_dir)


def compress(args, layers, resume_dir):
    calib, calib_tokens = getattr(args, 'calib', None), getattr(args, 'calib_tokens', None)
    t0 = time.time()
    src, ckpt = load_model(args.source)
    src.eval()
    check_finite(src, args.source)
    print(f"{args.source}: {src.config.n_layer} layers, n_embd {src.config.n_embd}, mlp {src.config.mlp}, "
          f"{src.num_params('paper'):,} parameters")
    info = dict(source=args.source, method=args.method)
    with torch.no_grad():
        if args.method == 'truncate':
            layers = layers if layers is not None else default_layers(src.config.n_layer)
            model = truncate_model(src, layers)
            info['layers'] = layers
            print(f"kept layers {layers}")
            out = args.out or os.path.join('checks', f"truncate_{'-'.join(map(str, layers))}.pt")
            check_destination(out, args.force, inputs=[args.source])
        else:
            if args.rank == 'found':
                rank, found = stage2_rank(src, ckpt, args.buffer)
                print("InRank ranks found: " + ', '.join(f"{n.removeprefix('transformer.')} {r}" for n, r in found.items()))
                print(f"stage 2 keeps the largest, {rank}, in every matrix")
                info['ranks_found'] = found
                out = (os.path.join(resume_dir, 'ckpt.pt') if resume_dir
                       else args.out or os.path.join('checks', f'inrank_stage2_r{rank}.pt'))
            else:
                rank = int(args.rank)
                out = args.out or os.path.join('checks', f"lowrank_{rank}{'_calib' if calib else ''}.pt")
            check_destination(out, args.force, inputs=[args.source, calib])  # before the SVDs
            if calib:
                model, rows = calibrated_lowrank(src, ckpt, args.source, rank, calib, calib_tokens, info)
            else:
                model, errors = lowrank_model(src, rank)
                info['rel_err'] = dict(errors)
                print(f"{'matrix':<28} {'rel.err':>8}")
                for name, err in errors:
                    print(f"{name:<28} {err:8.4f}")
            info['rank'] = rank
    for count in ('paper', 'nanogpt'):
        print(f"parameters ({count} count): {src.num_params(count):,} -> {model.num_params(count):,}")
    state = stage2_state(ckpt, src, model, info['rank']) if resume_dir else {}
    if state:
        print(f"kept stage 1's training state at iteration {state['iter_num']}, Adam moments sliced to rank {info['rank']}")
    save_checkpoint({'model': model.state_dict(), 'model_args': asdict(model.config), 'compress': info,
                     'vocab': stored_vocab(ckpt, args.source), **state}, out)
    print(f"done in {time.time() - t0:.1f} s; wrote {out}")


if __name__ == '__main__':
    errors.run(main)
