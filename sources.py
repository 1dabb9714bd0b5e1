"""
Where a model argument points: a checkpoint file, a save_pretrained directory or a Hugging Face
hub name, checked before any work (a missing path or an unreachable hub fails at once, in one
line, instead of after the hub's retries).

    kind, where = model_source('gpt2')   # ('hub', 'gpt2'); or ('checkpoint', path), ('hf_dir', path)
"""

import os
import re
import socket
import threading
from functools import lru_cache
from urllib.parse import urlparse

CHECKPOINT_SUFFIXES = ('.pt', '.pth', '.ckpt')


def _env_true(name):
    return os.environ.get(name, '').strip().upper() in ('1', 'ON', 'YES', 'TRUE')


@lru_cache(maxsize=1)
def hub_reachable(timeout=2.0):
    """True when no offline flag is set and the hub's host accepts a TCP connection within `timeout`
    seconds. The probe runs in a thread because a stalled DNS lookup ignores socket timeouts;
    without it, the HF libraries retry for half a minute or more on a machine that is offline."""
    if _env_true('HF_DATASETS_OFFLINE') or _env_true('HF_HUB_OFFLINE'):
        return False
    url = urlparse(os.environ.get('HF_ENDPOINT', 'https://huggingface.co'))
    host, port = url.hostname, url.port or (443 if url.scheme == 'https' else 80)
    ok = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=connect, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def looks_like_hub_name(spec):
    """Hub names are 'name' or 'org/name' of letters, digits, '_', '.' and '-'."""
    return not spec.startswith(('/', '.', '~')) and re.fullmatch(r'[\w.-]+(/[\w.-]+)?', spec) is not None


def in_hub_cache(name):
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(name, 'config.json'), str)
    except Exception:  # an old huggingface_hub, or a name it rejects
        return False


def model_source(spec):
    """('checkpoint' | 'hf_dir' | 'hub', path or name) for a model argument, checked at once: a
    missing local path, a directory without config.json or a hub name that cannot be reached
    raises ValueError saying what to do, instead of failing after the hub's retries."""
    path = os.path.expanduser(spec)
    if os.path.isfile(path):
        return 'checkpoint', path
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, 'config.json')):
            raise ValueError(f"{spec} is a directory without config.json: give a save_pretrained "
                             f"directory, a checkpoint file or a hub name")
        return 'hf_dir', path
    if not looks_like_hub_name(spec) or spec.endswith(CHECKPOINT_SUFFIXES):
        raise ValueError(f"{spec} does not exist (give a checkpoint file, a save_pretrained directory "
                         f"or a hub name such as gpt2)")
    if in_hub_cache(spec):
        return 'hub', spec
    if not hub_reachable():
        raise ValueError(f"{spec} is not a local path, and as a hub name it is not in the Hugging Face "
                         f"cache while the hub cannot be reached: give a local copy (a save_pretrained "
                         f"directory), or fill the cache on a machine online and set HF_HUB_OFFLINE=1")
    return 'hub', spec
