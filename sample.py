"""
Generate text from a project checkpoint, a save_pretrained directory or a hub name.

    python sample.py checks/demo/student/best.pt --prompt "The history of" --num_samples 3
    python sample.py gpt2 --prompt FILE:prompt.txt --max_new_tokens 200 --temperature 0.8 --top_k 200
    python sample.py checks/shakespeare_char/best.pt --prompt "ROMEO:"     # character models too

Models trained on a character dataset (data/<name>/meta.pkl) are decoded with that vocabulary:
pass --meta data/<name>/meta.pkl, or let it be found from the checkpoint's stored config.
"""

import argparse
import os
import pickle
import sys

import torch

from checkpoint import load_model

ROOT = os.path.dirname(os.path.abspath(__file__))


def codec(meta_path):
    """(encode, decode) for the model's vocabulary: a character meta.pkl, else GPT-2 BPE."""
    if meta_path:
        with open(meta_path, 'rb') as f:
            meta = pickle.load(f)
        stoi, itos = meta['stoi'], meta['itos']

        def encode(s):
            missing = sorted({ch for ch in s if ch not in stoi})
            if missing:
                raise ValueError(f"the prompt has characters outside the model's vocabulary: {missing!r}")
            return [stoi[ch] for ch in s]
        return encode, lambda ids: ''.join(itos[i] for i in ids)
    from tokenizer import get_encoding
    enc = get_encoding()
    return (lambda s: enc.encode(s, allowed_special={'<|endoftext|>'})), enc.decode


def find_meta(ckpt, meta_arg):
    if meta_arg:
        if not os.path.isfile(meta_arg):
            raise ValueError(f"--meta {meta_arg} does not exist")
        return meta_arg
    dataset = (ckpt or {}).get('config', {}).get('dataset')
    if dataset:
        path = os.path.join(ROOT, 'data', dataset, 'meta.pkl')
        if os.path.isfile(path):
            return path
    return None


def generate(model, prompt_ids, num_samples, max_new_tokens, temperature, top_k, seed, device):
    """num_samples lists of token ids (prompt included); the same seed gives the same samples."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.tensor(prompt_ids, dtype=torch.long, device=device)[None]
    return [model.generate(x, max_new_tokens, temperature, top_k, generator=gen)[0].tolist()
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
    p.add_argument('--meta', help="a character dataset's meta.pkl (default: from the checkpoint's config)")
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = p.parse_args()
    if args.num_samples < 1 or args.max_new_tokens < 0 or args.temperature <= 0 or args.top_k < 0:
        raise ValueError("need --num_samples >= 1, --max_new_tokens >= 0, --temperature > 0, --top_k >= 0")
    prompt = args.prompt
    if prompt.startswith('FILE:'):
        path = prompt[len('FILE:'):]
        if not os.path.isfile(path):
            raise ValueError(f"prompt file {path} does not exist")
        with open(path, encoding='utf-8') as f:
            prompt = f.read()

    model, ckpt = load_model(args.model)
    model.to(args.device).eval()
    encode, decode = codec(find_meta(ckpt, args.meta))
    ids = encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty; give at least one character or token")
    for sample in generate(model, ids, args.num_samples, args.max_new_tokens, args.temperature,
                           args.top_k or None, args.seed, args.device):
        print(decode(sample))
        print('---------------')


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f"error: {e}")
