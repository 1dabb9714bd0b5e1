"""
Config for train.py: defaults, then config files (plain python assignments), then --key=value.

    python train.py config/krony_81m_vl.py --max_iters=100 --compile=False
    python train.py config/paper_recipe.py config/my_model.py     # files are read in order

Every key must already have a default; a value must have the default's type (an int is
accepted where a float is expected). Anything else is an error that names the key and the type,
so a typo never silently trains with the default. A config file may start from another one with
include('paper_recipe.py') (a path relative to the including file); its assignments come first
and the lines after the include override them.
"""

import ast
import difflib
import io
import os
import tokenize
import traceback


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
                         f"({type(value).__name__}) ({origin}); {fix(key, value, defaults[key], origin)}")
    return want(value)


def fix(key, value, default, origin):
    """What to write instead of a value of the wrong type, in the syntax of where it came from
    (--key=value on a shell's command line, key = value in a config file)."""
    def written(v):
        text = v if isinstance(v, str) else repr(v)
        if not origin.startswith('--'):
            return f"{key} = {text}"
        return f'--{key}="{text}"' if any(ch in text for ch in "'\" ()") else f"--{key}={text}"
    word = str(value).strip().lower()
    if type(default) is bool:
        if word in ('true', 'false', '1', '0', 'yes', 'no', 'on', 'off'):
            return f"write {written(word in ('true', '1', 'yes', 'on'))} (True or False, capitalised)"
        return f"write {written(True)} or {written(False)}"
    if type(default) is list:
        if isinstance(value, str):
            return f"write a python list: {written(repr([value]))} ({written('[]')} for none)"
        return f"write a python list, e.g. {written(repr(default))}"
    if type(default) is int:
        guess = int(value) if isinstance(value, float) and value.is_integer() else default
        return f"write a whole number, e.g. {written(guess)}"
    if type(default) is float:
        return f"write a number, e.g. {written(default)}"
    return f"write a string in quotes: {written(repr(str(value)))}"


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


def read_config_file(path, namespace, seen=()):
    """Run a config file's assignments into namespace; include('other.py') runs another first."""
    if path in seen:
        raise ValueError(f"config file {path} includes itself (through {' -> '.join(seen)})")
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"config file {path} cannot be read ({type(e).__name__})") from None

    def include(name):
        other = os.path.join(os.path.dirname(path), name)
        if not os.path.isfile(other):
            raise ValueError(f"config file {path}: include({name!r}) names no file ({other})")
        read_config_file(other, namespace, (*seen, path))

    try:
        code = compile(source, path, 'exec')
    except SyntaxError as e:
        raise ValueError(f"config file {path}, line {e.lineno}: {e.msg}") from None
    namespace['include'] = include
    try:
        exec(code, {}, namespace)
    except ValueError:
        raise
    except Exception as e:
        line = next((fr.lineno for fr in reversed(traceback.extract_tb(e.__traceback__)) if fr.filename == path), '?')
        raise ValueError(f"config file {path}, line {line}: {type(e).__name__}: {e}") from None
    finally:
        namespace.pop('include', None)


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
        read_config_file(arg, namespace)
        for key, value in namespace.items():
            if not key.startswith('_'):
                config[key] = check_value(key, value, defaults, arg)
    return config


def key_comments(path):
    """{name: comment} for the lines `name = value  # comment` or `name: type = value  # comment`
    of a python file (the default config of train.py, the fields of GPTConfig)."""
    with open(path, encoding='utf-8') as f:
        tokens = list(tokenize.generate_tokens(io.StringIO(f.read()).readline))
    out, line_start = {}, True
    for i, tok in enumerate(tokens):
        if line_start and tok.type == tokenize.NAME and i + 1 < len(tokens) and tokens[i + 1].string in ('=', ':'):
            comment = next((t.string for t in tokens[i:] if t.start[0] == tok.start[0] and t.type == tokenize.COMMENT), '')
            out.setdefault(tok.string, comment.lstrip('#').strip())
        line_start = tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT)
    return out


def usage(doc, defaults, sources, argv=()):
    """The --help text: the script's docstring, then every key with its value and its comment:
    the default, or what the config files and overrides in argv make of it (the default then
    follows)."""
    comments = {}
    for path in sources:
        for key, text in key_comments(path).items():
            comments.setdefault(key, text)
    values = load_config(defaults, argv)
    width = max(len(f"{k} = {v!r}") for k, v in values.items())
    title = f"with their values after {' '.join(argv)} (and the default where it differs)" if argv else 'with their defaults'
    lines = [doc.strip(), '', f'keys (set in a config file or as --key=value), {title}:']
    for key, value in values.items():
        note = f"(default {defaults[key]!r}) " if value != defaults[key] else ''
        lines.append(f"  {f'{key} = {value!r}':<{width}}  {note}{comments.get(key, '')}".rstrip())
    return '\n'.join(lines)
