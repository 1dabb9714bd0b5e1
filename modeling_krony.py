"""
The Hugging Face model of a factored export: GPT-2 whose MLP matrices stay Kronecker factors,
low-rank factors or dense, computed by this project's factored.py.

    python krony_to_gpt.py checks/kron_768_768_1_vl.pt out/krony-81m --factored

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained('out/krony-81m', trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained('out/krony-81m')

krony_to_gpt.py --factored copies this file, factored.py and kron_fast.py into the export, and
config.json's auto_map points transformers at them, so the directory loads offline in a process
that has never seen this project. Everything but the MLPs is transformers' own GPT-2 (attention, KV cache,
generate, save_pretrained, device_map, dtype, ...).
"""

from types import SimpleNamespace

from transformers import GPT2Config, GPT2LMHeadModel

try:  # inside an exported directory, which transformers imports as a package
    from .factored import MLP
except ImportError:  # in this project
    from factored import MLP

# the GPTConfig fields the kinds of MLP matrix read (factored.py's CONFIG_FIELDS), kept in config.json
MLP_FIELDS = dict(mlp='dense', kron_dim1=0, kron_dim2=0, kron_factors=1, kron_scalers=False,
                  lowrank_rank=0, lowrank_init='gpt2')


class KronyGPT2Config(GPT2Config):
    """GPT2Config plus the kind and shape of the MLP matrices; mlp_bias is GPTConfig.bias (a model
    trained without biases gets zero ones in the attention and LayerNorms, which GPT-2 always has)."""

    model_type = 'krony_gpt2'

    def __init__(self, mlp_bias=True, **kwargs):
        for name, default in MLP_FIELDS.items():
            setattr(self, name, kwargs.pop(name, default))
        self.mlp_bias = mlp_bias
        super().__init__(**kwargs)


class KronyGPT2LMHeadModel(GPT2LMHeadModel):
    """GPT2LMHeadModel with every block's MLP replaced by factored.py's."""

    config_class = KronyGPT2Config

    def __init__(self, config):
        super().__init__(config)
        fields = SimpleNamespace(**{name: getattr(config, name) for name in MLP_FIELDS}, n_embd=config.n_embd,
                                 mlp_width=4 * config.n_embd, bias=config.mlp_bias, dropout=config.resid_pdrop)
        for block in self.transformer.h:
            block.mlp = MLP(fields)
