"""The trainer command after `--`: checked once, before any run, then turned into a trial's fold lines."""
import dataclasses
import shlex

from utilities.tune.space import SpaceError, trial_arguments

# flags the tuner sets itself: the run folders are the sweep's, the folds the tuner's
TUNER_FLAGS = ('save_path', 'savename', 'cv_folds', 'cv_fold', 'resume')


@dataclasses.dataclass
class TrainerCommand:
    interpreter: str
    script: str
    args: list
    opt: object

    def line(self, extra):
        return shlex.join([self.interpreter, self.script] + list(self.args) + list(extra))

    def fold_lines(self, params, n_folds):
        """The K lines of a trial: its parameters and one fold each."""
        return [self.line(trial_arguments(params) + ['--cv_folds', str(n_folds), '--cv_fold', str(fold)])
                for fold in range(n_folds)]


def named_flags(args):
    """The flag names (no dashes) an argument list gives."""
    return {arg[2:].split('=')[0] for arg in args if arg.startswith('--')}


def parse_trainer_command(tokens, space, objective):
    """TrainerCommand of `python <script>.py <fixed flags>`; SpaceError for anything a run would trip on."""
    import argparse
    from utilities.sweep.commands import PYTHON
    from utilities.sweep.naming import line_parser
    if not tokens:
        raise SpaceError('no trainer command: end with -- python main.py <fixed flags>')
    if len(tokens) < 2 or not PYTHON.match(tokens[0]) or not tokens[1].endswith('.py'):
        raise SpaceError('trainer command {!r}: expected python <script>.py <flags>'.format(shlex.join(tokens[:3])))
    args = tokens[2:]
    try:
        opt = line_parser().parse_args(args)
    except argparse.ArgumentError as error:
        raise SpaceError('trainer command: {}'.format(error)) from None
    given = named_flags(args)
    both = [name for name in space if name in given]
    if both:
        raise SpaceError('--space {}: also fixed in the trainer command; search it or fix it, not both'
                         .format(' '.join('--' + name for name in both)))
    own = [name for name in TUNER_FLAGS if name in given]
    if own:
        raise SpaceError('trainer command: --{} is set by the tuner (each trial\'s fold runs live in the '
                         'study folder)'.format(own[0]))
    metric = objective or opt.storage_metrics[0]
    if metric not in opt.evaluation_metrics:
        raise SpaceError('--objective {}: not in the trainer command\'s --evaluation_metrics ({})'
                         .format(metric, ' '.join(opt.evaluation_metrics)))
    return TrainerCommand(tokens[0], tokens[1], list(args), opt)
