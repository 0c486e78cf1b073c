"""`python -m utilities.tune <study folder> --trials N --folds K --space ... -- python main.py <fixed flags>`:
hyperparameter search with Optuna over class-disjoint cross-validation folds; see docs/tuning.md.

A trial is K fold runs (`--cv_folds K --cv_fold i`) launched through utilities.sweep (slots, GPUs, Slurm,
resume); its value is the mean over the folds of the objective on Val at each fold's best epoch. The
study is Optuna's journal file in the folder (or `--storage URL`). Killed and rerun with the same
command, it keeps the finished trials, resumes the interrupted one (its fold runs resume from their last
epoch) and counts no trial twice; a run that fails (e.g. diverges) fails its trial and the study goes on.
"""
import argparse
import contextlib
import fcntl
import math
import os
import sys

from utilities.tune.space import SpaceError, parse_space
from utilities.tune.study_files import (best_trial, draw_figures, trial_fold_values, trial_folder,
                                        write_best_json, write_trials_csv)
from utilities.tune.trainer_command import parse_trainer_command

# options of utilities.sweep that a tuner passes on to every trial's sweep
SWEEP_OWN = ('--sweep_dir', '--grep', '--set', '--dry_run', '--retry_failed')


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m utilities.tune', description=__doc__.splitlines()[0],
                                     epilog='Other options (--slots, --gpus, --per_gpu, --slurm ...) go to '
                                            'utilities.sweep for every trial.')
    parser.add_argument('study_folder', help='Folder of the study: journal, trials/, trials.csv, best.json.')
    parser.add_argument('--trials', type=int, default=20, help='Trials to finish (complete or failed).')
    parser.add_argument('--folds', type=int, default=4, help='K class-disjoint folds per trial.')
    parser.add_argument('--space', nargs='+', default=[], metavar='NAME=RANGE',
                        help='Searched trainer flags: LOW:HIGH, log:LOW:HIGH, int:LOW:HIGH, intlog:LOW:HIGH, '
                             'choice:A,B.')
    parser.add_argument('--objective', default='',
                        help='Val metric to maximise (default: the trainer command\'s first --storage_metrics).')
    parser.add_argument('--direction', choices=('maximize', 'minimize'), default='maximize')
    parser.add_argument('--seed', type=int, default=0, help='Seed of the TPE sampler.')
    parser.add_argument('--startup_trials', type=int, default=10,
                        help='Random trials before TPE models the results (Optuna\'s n_startup_trials).')
    parser.add_argument('--storage', default='', help='Optuna storage URL instead of the journal file.')
    parser.add_argument('--study_name', default='', help='Study name in --storage (default: the folder name).')
    parser.add_argument('--reproduce', type=int, default=0, metavar='R',
                        help='Then train the best parameters on all training classes with seeds 0..R-1 '
                             '(group --reproduce_group) and evaluate the fold models\' ensemble on Test.')
    parser.add_argument('--reproduce_group', default='', help='Group of the reproductions (default: folder name).')
    parser.add_argument('--no_figures', action='store_true', help='Skip the two figures.')
    return parser


class TuneError(Exception):
    """Bad input, reported as one line."""


def split_argv(argv):
    if '--' not in argv:
        return argv, []
    cut = argv.index('--')
    return argv[:cut], argv[cut + 1:]


def sweep_options(rest):
    """The options passed on to utilities.sweep, checked by its own parser."""
    from utilities.sweep.__main__ import build_parser as sweep_parser
    for arg in rest:
        if arg.split('=')[0] in SWEEP_OWN:
            raise TuneError('{}: the tuner sets it for every trial'.format(arg.split('=')[0]))
    parser = sweep_parser()

    def error(message):
        raise TuneError('unrecognised option: {}'.format(message))
    parser.error = error
    options = parser.parse_args(['commands'] + rest)
    if not options.gpus and not options.slots and not options.slurm:
        raise TuneError('give --slots N (a box without GPUs), --gpus 0,1,... or --slurm for the trials\' runs')
    return rest


def parse(argv):
    own, trainer = split_argv(list(argv))
    options, rest = build_parser().parse_known_args(own)
    try:
        if options.trials < 1:
            raise TuneError('--trials {}: give at least 1'.format(options.trials))
        if options.folds < 2:
            raise TuneError('--folds {}: give at least 2'.format(options.folds))
        if options.reproduce < 0:
            raise TuneError('--reproduce {}: give 0 or more seeds'.format(options.reproduce))
        space = parse_space(options.space)
        command = parse_trainer_command(trainer, space, options.objective)
        passed = sweep_options(rest)
    except SpaceError as error:
        raise TuneError(str(error)) from None
    options.objective = options.objective or command.opt.storage_metrics[0]
    return options, space, command, passed


@contextlib.contextmanager
def file_lock(path, blocking=True):
    """An exclusive lock held by this process (released by the kernel if it dies); yields False when
    `blocking` is off and another process holds it."""
    handle = open(path, 'a')
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        handle.close()


def try_lock(path):
    """An open file holding an exclusive lock on `path`, or None if another process holds it."""
    handle = open(path, 'a')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def open_study(options):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.makedirs(options.study_folder, exist_ok=True)
    if options.storage:
        storage = options.storage
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        storage = JournalStorage(JournalFileBackend(os.path.join(options.study_folder, 'journal.log')))
    name = options.study_name or os.path.basename(os.path.abspath(options.study_folder))
    study = optuna.create_study(study_name=name, storage=storage, direction=options.direction,
                                load_if_exists=True)
    if study.direction.name.lower() != options.direction:
        raise TuneError('--direction {}: the study in {} was created to {}'.format(
            options.direction, options.study_folder, study.direction.name.lower()))
    # seeded by the history: an uninterrupted study replays its sequence, a resumed one does not repeat it
    study.sampler = optuna.samplers.TPESampler(seed=options.seed + len(study.trials),
                                               n_startup_trials=options.startup_trials)
    return study


def next_trial(study, options, space, locks_folder):
    """(trial number, params, lock) of an interrupted trial no process works on, else of a new trial
    while fewer than --trials are finished or running; None when there is nothing left to do."""
    import optuna
    running = optuna.trial.TrialState.RUNNING
    with file_lock(os.path.join(options.study_folder, 'tune.lock')):
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state == running:
                lock = try_lock(os.path.join(locks_folder, '{:04d}.lock'.format(trial.number)))
                if lock is not None:
                    return trial.number, trial.params, lock, 'resumed'
        counted = [t for t in trials if t.state in (running, optuna.trial.TrialState.COMPLETE,
                                                    optuna.trial.TrialState.FAIL)]
        if len(counted) >= options.trials:
            return None
        trial = study.ask(space)
        lock = try_lock(os.path.join(locks_folder, '{:04d}.lock'.format(trial.number)))
        return trial.number, trial.params, lock, 'started'


def run_sweep(commands_path, sweep_folder, passed):
    """utilities.sweep in this process (a killed tuner is a killed launcher: the rerun resumes its runs)."""
    from utilities.sweep.__main__ import main as sweep_main
    try:
        return sweep_main([commands_path, '--sweep_dir', sweep_folder] + passed)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2


def write_commands(path, lines):
    from utilities.atomic import atomic_write_text
    atomic_write_text('\n'.join(lines) + '\n', path)


def run_trial(number, params, options, command, passed):
    """(state, fold values): COMPLETE or FAIL once the sweep has ended, None if it was stopped."""
    folder = trial_folder(options.study_folder, number)
    os.makedirs(folder, exist_ok=True)
    commands = os.path.join(folder, 'commands.sh')
    write_commands(commands, command.fold_lines(params, options.folds))
    code = run_sweep(commands, folder, passed)
    if code not in (0, 1):   # stopped by a signal, a write error or bad input: the trial stays running
        raise StoppedSweep(code)
    values, _ = trial_fold_values(folder, options.folds, options.objective, command.opt.storage_metrics[0],
                                  command.opt.evaltypes[0])
    if code != 0 or any(math.isnan(v) for v in values):
        return 'FAIL', values
    return 'COMPLETE', values


class StoppedSweep(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


def report_line(study, number, state, values, params):
    best = best_trial(study)
    shown = ' '.join('{}={:.4g}'.format(k, v) if isinstance(v, float) else '{}={}'.format(k, v)
                     for k, v in params.items())
    folds = ' '.join('-' if math.isnan(v) else '{:.4f}'.format(v) for v in values)
    value = '' if state != 'COMPLETE' else ' {:.4f}'.format(sum(values) / len(values))
    best_text = '' if best is None else '; best {:.4f} (trial {})'.format(best.value, best.number)
    return 'trial {} {}{} (folds {}) {}{}'.format(number, state, value, folds, shown, best_text)


def write_outputs(study, options, command, figures=False):
    """trials.csv and best.json after every trial; the figures once the loop ends."""
    write_trials_csv(study, options.study_folder, options.folds, options.objective,
                     command.opt.storage_metrics[0], command.opt.evaltypes[0])
    write_best_json(study, options.study_folder, options.objective)
    if figures and not options.no_figures:
        draw_figures(study, options.study_folder)


def tune(options, space, command, passed):
    import optuna
    study = open_study(options)
    locks = os.path.join(options.study_folder, 'trials')
    os.makedirs(locks, exist_ok=True)
    while True:
        chosen = next_trial(study, options, space, locks)
        if chosen is None:
            break
        number, params, lock, how = chosen
        try:
            print('trial {} {}: {} fold runs'.format(number, how, options.folds), flush=True)
            state, values = run_trial(number, params, options, command, passed)
            if state == 'COMPLETE':
                study.tell(number, sum(values) / len(values))
            else:
                study.tell(number, state=optuna.trial.TrialState.FAIL)
        finally:
            lock.close()
        print(report_line(study, number, state, values, params), flush=True)
        write_outputs(study, options, command)
    write_outputs(study, options, command, figures=True)
    running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    best = best_trial(study)
    done = len([t for t in study.trials if t.state != optuna.trial.TrialState.RUNNING])
    print('study {}: {} trial(s) finished{}; best {}'.format(
        options.study_folder, done, ', {} running elsewhere'.format(len(running)) if running else '',
        'none' if best is None else '{:.4f} (trial {}) {}'.format(best.value, best.number, best.params)), flush=True)
    return study, running


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        options, space, command, passed = parse(argv)
        study, running = tune(options, space, command, passed)
        if options.reproduce and not running:
            from utilities.tune.reproduce import reproduce
            return reproduce(study, options, command, passed, run_sweep)
        return 0
    except TuneError as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 2
    except StoppedSweep as stop:
        print('stopped (sweep exit {}); rerun the same command to resume'.format(stop.code), file=sys.stderr)
        return stop.code


if __name__ == '__main__':
    sys.exit(main())
