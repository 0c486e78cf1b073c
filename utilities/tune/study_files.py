"""What a study leaves in its folder besides Optuna's journal: trials.csv, best.json and two figures."""
import csv
import io
import json
import math
import os
import re
import warnings

from utilities.atomic import atomic_write_text
from utilities.tune.fold_values import fold_value

STATE_FILE = 'sweep_state.json'


def trial_folder(study_folder, number):
    return os.path.join(study_folder, 'trials', '{:04d}'.format(number))


def fold_runs(folder):
    """{fold: (run folder, sweep status)} of a trial's sweep folder (empty before its sweep started)."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        records = json.load(handle)['runs']
    runs = {}
    for record in records.values():
        match = re.search(r'--cv_fold[ =](\d+)', record.get('command', ''))
        if match:
            runs[int(match.group(1))] = (record['folder'], record.get('status', ''))
    return runs


def trial_fold_values(folder, n_folds, objective, storage_metric, evaltype):
    """[value of fold 0, ..., fold K-1] (NaN for a fold without a finished run) and the run folders."""
    runs = fold_runs(folder)
    values, folders = [], []
    for fold in range(n_folds):
        run_folder, status = runs.get(fold, ('', ''))
        folders.append(run_folder)
        values.append(fold_value(run_folder, objective, storage_metric, evaltype)
                      if status == 'done' else math.nan)
    return values, folders


def write_trials_csv(study, study_folder, n_folds, objective, storage_metric, evaltype):
    names = []
    for trial in study.trials:
        names += [name for name in trial.distributions if name not in names]
    header = (['trial', 'state'] + names + ['fold{}'.format(k) for k in range(n_folds)] +
              ['objective'] + ['run_fold{}'.format(k) for k in range(n_folds)])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for trial in study.trials:
        values, folders = trial_fold_values(trial_folder(study_folder, trial.number), n_folds, objective,
                                            storage_metric, evaltype)
        writer.writerow([trial.number, trial.state.name] + [trial.params.get(name, '') for name in names] +
                        ['' if math.isnan(v) else v for v in values] +
                        ['' if trial.value is None else trial.value] + folders)
    atomic_write_text(out.getvalue(), os.path.join(study_folder, 'trials.csv'))


def best_trial(study):
    import optuna
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return study.best_trial if complete else None


def write_best_json(study, study_folder, objective):
    best = best_trial(study)
    if best is None:
        return None
    record = {'trial': best.number, 'objective': objective, 'value': best.value, 'params': best.params}
    atomic_write_text(json.dumps(record, indent=2) + '\n', os.path.join(study_folder, 'best.json'))
    return record


def draw_figures(study, study_folder):
    """optimisation_history.png and param_importances.png (the latter from two complete trials on)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for name, draw, needed in (('optimisation_history', optuna_plots.plot_optimization_history, 1),
                                   ('param_importances', optuna_plots.plot_param_importances, 2)):
            if len(complete) < needed:
                continue
            try:
                axes = draw(study)
            except (ValueError, RuntimeError):   # e.g. importances of parameters that never varied
                continue
            figure = axes.figure if hasattr(axes, 'figure') else axes[0].figure
            path = os.path.join(study_folder, name + '.png')
            figure.savefig(path, bbox_inches='tight')
            plt.close(figure)
            paths.append(path)
    return paths
