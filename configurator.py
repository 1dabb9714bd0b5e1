"""
Config for train.py: defaults, then config files (plain python assignments), then --key=value.

    python train.py config/demo_teacher.py --max_iters=100 --compile=False

Every key must already have a default; a value must have the default's type (an int is
accepted where a float is expected). Anything else is an error that names the key and the type,
so a typo never silently trains with the default.
"""

import ast
import difflib
import os


def check_value(key, value, defaults, origin):
    """value converted to the type of defaults[key], or ValueError naming the key and the type."""
    if key not in defaults:
        close = difflib.get_close_matches(key, defaults, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(sorted(defaults))}"
        raise ValueError(f"unknown config key '{key}' ({origin}){hint}")
    want = type(defaults[key])
    # bool is a subclass of int: neither may stand in for the other
    ok = type(value) is want or (want is float and type(value) is int) or (want is list and type(value) is tuple)
    if not ok:
        raise ValueError(f"config key '{key}' expects {want.__name__}, got {value!r} "
                         f"({type(value).__name__}) ({origin})")
    return want(value)


def parse_override(arg):
    """'--key=value' -> (key, python value); a value that is not a python literal is a string."""
    if not arg.startswith('--') or '=' not in arg:
        raise ValueError(f"cannot parse argument {arg!r}: expected a config file or --key=value")
    key, text = arg[2:].split('=', 1)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    return key, value


def load_config(defaults, argv):
    """A new dict: defaults updated by the config files and overrides in argv, in order."""
    config = dict(defaults)
    for arg in argv:
        if arg.startswith('--'):
            key, value = parse_override(arg)
            config[key] = check_value(key, value, defaults, arg)
            continue
        if not os.path.isfile(arg):
            if '=' in arg:
                raise ValueError(f"cannot parse argument {arg!r}: expected a config file or --key=value")
            raise ValueError(f"config file {arg} does not exist")
        namespace = {}
        with open(arg) as f:
            exec(compile(f.read(), arg, 'exec'), {}, namespace)
        for key, value in namespace.items():
            if not key.startswith('_'):
                config[key] = check_value(key, value, defaults, arg)
    return config
