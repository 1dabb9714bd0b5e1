"""
Generate text from a project checkpoint, a save_pretrained directory or a hub name.

    python sample.py out/demo/student/best.pt --prompt "The history of" --num_samples 3   # the demo's student
    python sample.py gpt2 --prompt FILE:prompt.txt --max_new_tokens 200 --temperature 0.8 --top_k 200
    python sample.py out/demo/student_hf --prompt " = Valkyria"   # a character model's export
    python sample.py out/krony-81m --no_cache        # a --factored export; no KV cache (same tokens, slower)

The model's own tokenizer is used: the character vocabulary a checkpoint stores (train.py keeps
its dataset's meta.pkl in it), a model directory's tokenizer files, or GPT-2's BPE for GPT-2
models; --meta data/<name>/meta.pkl gives a character vocabulary explicitly.
"""

import argparse
import os

import torch

import errors
from checkpoint import load_model
from tokenizer import CharTokenizer, read_meta, tokenizer_for


def read_meta_tokenizer(path):
    if not os.path.isfile(path):
        raise ValueError(f"--meta {path} does not exist")
    return CharTokenizer.from_meta(read_meta(path), path)


def generate(model, prompt_ids, num_samples, max_new_tokens, temperature, top_k, seed, device, use_cache=True):
    """num_samples lists of token ids (prompt included); the same seed gives the same samples.
    use_cache: GPT.generate's KV cache (the same tokens, each step on the newest token alone)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.tensor(prompt_ids, dtype=torch.long, device=device)[None]
    return [model.generate(x, max_new_tokens, temperature, top_k, generator=gen, use_cache=use_cache)[0].tolist()
            for _ in range(num_samples)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('model', help='checkpoint file, save_pretrained directory or hub name')
    p.add_argument('--prompt', default='\n', help='text, or FILE:path to read it from a file')
    p.add_argument('--num_samples', type=int, default=3)
    p.add_argument('--max_new_tokens', type=int, default=100)
    p.add_argument('--temperature', type=float, default=0.8)
    p.add_argument('--top_k', type=int, default=200, help='0 keeps every token')
    p.add_argument('--seed', type=int, default=1337)
    p.add_argument('--meta', help="a character dataset's meta.pkl (default: the model's own vocabulary)")
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--no_cache', action='store_true',
                   help='recompute the whole context for every token instead of keeping a KV cache')
    args = p.parse_args()
    if args.num_samples < 1 or args.max_new_tokens < 0 or args.temperature <= 0 or args.top_k < 0:
        raise ValueError("need --num_samples >= 1, --max_new_tokens >= 0, --temperature > 0, --top_k >= 0")
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: this torch sees no CUDA GPU; use --device cpu")
    prompt = args.prompt
    if prompt.startswith('FILE:'):
        path = prompt[len('FILE:'):]
        if not os.path.isfile(path):
            raise ValueError(f"prompt file {path} does not exist")
        with open(path, encoding='utf-8') as f:
            prompt = f.read()
    meta_tok = read_meta_tokenizer(args.meta) if args.meta else None

    model, ckpt = load_model(args.model)
    model.to(args.device).eval()
    tok = meta_tok or tokenizer_for(model, ckpt, args.model)
    if tok.vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tok.vocab_size} ids, more than the model's {model.config.vocab_size}")
    ids = tok.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty; give at least one character or token")
    for sample in generate(model, ids, args.num_samples, args.max_new_tokens, args.temperature,
                           args.top_k or None, args.seed, args.device, not args.no_cache):
        print(tok.decode(sample))
        print('---------------')


if __name__ == '__main__':
    errors.run(main)
