"""Deterministic run folders: the launcher names every run it starts, so a rerun finds the same folder.

The folder is `<save_path>/<dataset>/<savename>`, as the trainer builds it. A line without `--savename`
gets `<group>_s<seed>` when it names a `--group` (the trainer's own W&B name, so W&B and local
tables group it the same way), else `<script>_<loss>_<digest>_s<seed>` where the digest covers every
argument but the seed and the fold (the seeds and folds of one configuration share a stem). A line with
`--cv_folds K --cv_fold i` gets `_fold<i>` before `_s<seed>`. Two lines that would still share
a folder get a digest of the whole line appended; a line's own `--savename` is never changed, so two
lines that give the same one are an error. Without `--save_path` the run goes to `<sweep>/runs`.
"""
import argparse
import dataclasses
import hashlib
import os
import shlex

import parameters


@dataclasses.dataclass
class Run:
    """One run of the sweep: its identity `key`, its folder and the two commands that serve it."""
    key: str
    command: object
    save_path: str
    dataset: str
    savename: str
    savename_given: bool
    save_path_given: bool

    @property
    def folder(self):
        return os.path.join(self.save_path, self.dataset, self.savename)

    def fresh_argv(self, python):
        extra = []
        if not self.save_path_given:
            extra += ['--save_path', self.save_path]
        if not self.savename_given:
            extra += ['--savename', self.savename]
        return self.command.argv(python) + extra

    def resume_argv(self, python):
        return self.command.argv(python)[:2] + ['--resume', self.folder]


class NamingError(Exception):
    """A line the trainer would reject, or two lines writing one folder: reported as one line."""


def digest(text, length=8):
    return hashlib.sha1(text.encode('utf-8')).hexdigest()[:length]


def line_parser():
    parser = parameters.build_parser()

    def error(message):
        raise argparse.ArgumentError(None, message)
    parser.error = error
    return parser


def without_seed(args, flags=('--seed',)):
    """The arguments minus `--seed N` / `--seed=N` (and the other `flags`): what all seeds of one
    configuration share."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in flags:
            skip = True
            continue
        if not any(arg.startswith(flag + '=') for flag in flags):
            kept.append(arg)
    return kept


def plan_runs(commands, sweep_folder):
    """Runs of `commands` in file order, identical lines counted once; (runs, number of duplicates)."""
    parser = line_parser()
    defaults = parser.parse_args([])
    runs, seen, duplicates = [], set(), 0
    for command in commands:
        key = shlex.join([command.script] + command.args)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        try:
            opt = parser.parse_args(command.args)
        except argparse.ArgumentError as error:
            raise NamingError('line {}: {}'.format(command.line, error))
        if opt.resume:
            raise NamingError('line {}: a sweep line starts a run; --resume is the launcher\'s job'
                              .format(command.line))
        save_path_given = opt.save_path != defaults.save_path
        savename_given = opt.savename != defaults.savename
        fold = '_fold{}'.format(opt.cv_fold) if opt.cv_folds else ''
        if savename_given:
            savename = opt.savename
        elif opt.group != defaults.group:
            savename = '{}{}_s{}'.format(opt.group, fold, opt.seed)
        else:
            stem = os.path.splitext(os.path.basename(command.script))[0]
            configuration = shlex.join([command.script] + without_seed(command.args, ('--seed', '--cv_fold')))
            savename = '{}_{}_{}{}_s{}'.format(stem, opt.loss, digest(configuration), fold, opt.seed)
        save_path = os.path.abspath(opt.save_path) if save_path_given else \
            os.path.join(os.path.abspath(sweep_folder), 'runs')
        runs.append(Run(key=key, command=command, save_path=save_path, dataset=opt.dataset,
                        savename=savename, savename_given=savename_given, save_path_given=save_path_given))
    separate_collisions(runs)
    return runs, duplicates


def separate_collisions(runs):
    by_folder = {}
    for run in runs:
        by_folder.setdefault(run.folder, []).append(run)
    for folder, sharing in by_folder.items():
        if len(sharing) < 2:
            continue
        given = [run for run in sharing if run.savename_given]
        if len(given) > 1:
            raise NamingError('lines {} all write {}; give them different --savename'
                              .format(', '.join(str(run.command.line) for run in given), folder))
        for run in sharing:
            if not run.savename_given:
                run.savename = '{}_{}'.format(run.savename, digest(run.key, 6))
    folders = [run.folder for run in runs]
    if len(set(folders)) != len(folders):
        raise NamingError('two lines still share a run folder after naming; give them --savename')


def keep_recorded_folders(runs, recorded):
    """A run the state already knows keeps its folder name, even if a line added to the file since then
    makes the naming add a digest: otherwise a finished run would be started again."""
    for run in runs:
        folder = recorded.get(run.key)
        if folder and not run.savename_given:
            run.savename = os.path.basename(folder)
    folders = [run.folder for run in runs]
    if len(set(folders)) != len(folders):
        raise NamingError('the state file and the commands file disagree on run folders; use a new --sweep_dir')
