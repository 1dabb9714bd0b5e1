"""Load an exported directory the way a user of it would, with transformers alone, and write what
it computes to a JSON file. The tests copy this file out of the project and run it in a fresh
process (working directory and sys.path outside the project; any python with transformers).

    python hf_load.py MODEL_DIR REQUEST.json RESULT.json

REQUEST: {"tokens": [[ids]], "prompt": [[ids]], "new_tokens": n, "text": str}. RESULT: the logits
of tokens, greedy generate() of prompt (KV cache on, transformers' default), the tokenizer's ids
for text, and the same logits after a save_pretrained / from_pretrained round trip.
"""
import importlib.util
import json
import sys
import tempfile

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

model_dir, request, result = sys.argv[1:4]
with open(request) as f:
    req = json.load(f)
# nothing of the project can be imported here: the export has to carry its own code
found = [m for m in ('factored', 'kron_fast', 'model', 'modeling_krony', 'krony_to_gpt') if importlib.util.find_spec(m)]
if found:
    sys.exit(f"the project is importable here ({found}); run from outside it without PYTHONPATH")

config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
tokens = torch.tensor(req['tokens'])
with torch.no_grad():
    logits = model(tokens).logits
generated = model.generate(torch.tensor(req['prompt']), max_new_tokens=req['new_tokens'], do_sample=False,
                           pad_token_id=0, use_cache=True)
with tempfile.TemporaryDirectory() as tmp:
    model.save_pretrained(tmp)
    again = AutoModelForCausalLM.from_pretrained(tmp, trust_remote_code=True).eval()
    with torch.no_grad():
        resaved = (again(tokens).logits - logits).abs().max().item()
out = dict(transformers=transformers.__version__, model_class=type(model).__name__,
           model_type=config.model_type, mlp=getattr(config, 'mlp', None),
           params=sum(p.numel() for p in model.parameters()),
           logits=logits.tolist(), generated=generated.tolist(), resaved_diff=resaved,
           tokenizer_class=type(tok).__name__, model_max_length=tok.model_max_length,
           text_ids=tok(req['text'], add_special_tokens=False)['input_ids'])
with open(result, 'w') as f:
    json.dump(out, f)
