"""Read the options a run folder was trained with: `hypa.pkl`, else `Parameter_Info.txt`.

`hypa.pkl` is a pickled argparse Namespace that may hold objects of modules this process cannot or
should not import (a `torch.device`, a class of a renamed module). The tolerant unpickler rebuilds
plain Python and numpy values and replaces every other global by an inert placeholder, so reading
the options never imports torch and never runs code named in the file.
"""
import ast
import os
import pickle

SAFE_GLOBALS = {
    ('argparse', 'Namespace'),
    ('collections', 'OrderedDict'),
    ('copyreg', '_reconstructor'),
    ('pathlib', 'PosixPath'), ('pathlib', 'WindowsPath'), ('pathlib', 'PurePosixPath'),
    ('numpy', 'dtype'), ('numpy', 'ndarray'),
    ('numpy.core.multiarray', 'scalar'), ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'), ('numpy._core.multiarray', '_reconstruct'),
} | {('builtins', name) for name in ('object', 'list', 'dict', 'set', 'frozenset', 'tuple', 'int', 'float',
                                      'complex', 'str', 'bytes', 'bytearray', 'bool', 'slice', 'range')}


class Placeholder:
    """Stands in for an object whose class is not on the safe list; keeps what the pickle gave it."""

    def __new__(cls, *args, **kwargs):
        instance = super().__new__(cls)
        instance.args = args
        return instance

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        shown = ', '.join(repr(a) for a in getattr(self, 'args', ()))
        return '{}({})'.format(self.qualified_name, shown)


def placeholder_class(module, name):
    return type(name, (Placeholder,), {'qualified_name': module + '.' + name})


class TolerantUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        return placeholder_class(module, name)


def load_pickled_options(path):
    """The namespace in `path` as a dict; raises what unpickling raises on a damaged file."""
    with open(path, 'rb') as handle:
        namespace = TolerantUnpickler(handle).load()
    if isinstance(namespace, dict):
        return dict(namespace)
    return dict(vars(namespace))


def parse_value(text):
    """`str(value)` back to the value where it is a Python literal (`150`, `[1000]`, `None`), else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_parameter_info(text):
    """Parameter_Info.txt: a name line, then `\\t<value>` (or several `\\t<key>: <value>`), then a blank line."""
    options, name, values = {}, None, []

    def close():
        if name is None:
            return
        if len(values) == 1:
            options[name] = parse_value(values[0])
        else:
            options[name] = {k: parse_value(v) for k, _, v in (line.partition(': ') for line in values)}

    for line in text.splitlines():
        if line.startswith('\t'):
            values.append(line[1:])
        elif line.strip():
            close()
            name, values = line.strip(), []
    close()
    return options


def read_run_options(run_dir):
    """(options dict, file it came from) from hypa.pkl, falling back to Parameter_Info.txt; ({}, None) if neither."""
    pickled = os.path.join(run_dir, 'hypa.pkl')
    if os.path.isfile(pickled):
        try:
            return load_pickled_options(pickled), pickled
        except Exception:
            pass
    info = os.path.join(run_dir, 'Parameter_Info.txt')
    if os.path.isfile(info):
        with open(info, encoding='utf-8', errors='replace') as handle:
            return parse_parameter_info(handle.read()), info
    return {}, None
