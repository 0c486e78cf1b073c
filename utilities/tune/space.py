"""The search space of `--space NAME=RANGE ...`: trainer flags and their Optuna distributions.

RANGE is `LOW:HIGH` (uniform float), `log:LOW:HIGH` (log-uniform float), `int:LOW:HIGH` (integer),
`intlog:LOW:HIGH` (log-uniform integer) or `choice:A,B,...` (categorical, values as typed).
"""
import optuna

KINDS = ('log', 'int', 'intlog', 'choice')


class SpaceError(Exception):
    """Bad search space or trainer command: reported as one line before any run starts."""


def trainer_flags():
    """{name without dashes: argparse action} of every trainer flag."""
    import parameters
    return {action.dest: action for action in parameters.build_parser()._actions if action.option_strings}


def number(text, entry, kind=float):
    try:
        return kind(text)
    except ValueError:
        raise SpaceError('--space {}: {!r} is not {}'.format(
            entry, text, 'an integer' if kind is int else 'a number')) from None


def parse_entry(entry):
    """(flag, distribution) of one `NAME=RANGE`."""
    name, sep, spec = entry.partition('=')
    name = name.strip().lstrip('-')
    if not sep or not name or not spec:
        raise SpaceError('--space {}: expected NAME=RANGE, e.g. lr=log:1e-6:1e-3'.format(entry))
    flags = trainer_flags()
    if name not in flags:
        raise SpaceError('--space {}: --{} is not a trainer flag'.format(entry, name))
    if flags[name].nargs == 0:
        raise SpaceError('--space {}: --{} is a switch; search flags that take a value'.format(entry, name))
    parts = spec.split(':')
    kind = parts[0] if parts[0] in KINDS else 'uniform'
    bounds = parts[1:] if kind != 'uniform' else parts
    if kind == 'choice':
        values = [v for v in ':'.join(bounds).split(',') if v]
        if not values:
            raise SpaceError('--space {}: empty choice'.format(entry))
        return name, optuna.distributions.CategoricalDistribution(values)
    if len(bounds) != 2:
        raise SpaceError('--space {}: expected {}LOW:HIGH'.format(entry, '' if kind == 'uniform' else kind + ':'))
    integer = kind in ('int', 'intlog')
    low, high = (number(b, entry, int if integer else float) for b in bounds)
    if not low < high:
        raise SpaceError('--space {}: empty range ({} is not below {})'.format(entry, low, high))
    if kind in ('log', 'intlog') and low <= 0:
        raise SpaceError('--space {}: a log range needs LOW > 0'.format(entry))
    if integer:
        return name, optuna.distributions.IntDistribution(low, high, log=kind == 'intlog')
    return name, optuna.distributions.FloatDistribution(low, high, log=kind == 'log')


def parse_space(entries):
    """{flag: distribution} in the order given; a flag named twice is an error."""
    if not entries:
        raise SpaceError('--space: give at least one NAME=RANGE')
    space = {}
    for entry in entries:
        name, distribution = parse_entry(entry)
        if name in space:
            raise SpaceError('--space: --{} is searched twice'.format(name))
        space[name] = distribution
    return space


def as_argument(value):
    """A parameter value as the trainer reads it (floats with all their digits)."""
    return repr(value) if isinstance(value, float) else str(value)


def trial_arguments(params):
    """Trainer arguments `--name value` of a trial's parameters."""
    arguments = []
    for name, value in params.items():
        arguments += ['--' + name, as_argument(value)]
    return arguments
