"""Best values per run, mean ± std per group, as the reference's Result_Evaluations computes them.

Per run whose history has more than `min_length` rows: every metric's NaN-ignoring maximum over the
epochs ('max', the reference), or its value at the best-R@1 epoch ('best_r1'); the epoch of the best
R@1 (`Max_Epoch`, the `_step` of that row: the epoch even when W&B sampled the history, where the
reference's row index is not); the Train embedding statistics at that row. Per group: mean and
standard deviation (ddof 0) over its runs. A key a run did not log counts as NaN for that run (its
group's mean is then NaN, shown as '-'); one warning per key says how many runs lack it (optional
keys, aggregated only because some run logged them, are not warned about).

Selection without the test set: for runs with a Val log (--use_tv_split), every Test metric is also
read at the epoch of the best Val storage metric (the run's first --storage_metrics and --evaltypes;
first maximum), under `<name> at best Val`, with that epoch as `Val_Epoch`; `selection='best_val'`
puts those values in the plain names (what the tables show). Runs without training_summary.txt have
not finished: they are left out unless `include_unfinished`, and each group counts them.
"""
import collections
import dataclasses
import warnings

import numpy as np
import pandas as pd

from utilities.results import selection as val_selection

# short name -> W&B key; the keys a missing value is warned about.
METRIC_KEYS = {
    'R@1': 'Test: discriminative_e_recall: e_recall@1',
    'R@2': 'Test: discriminative_e_recall: e_recall@2',
    'R@4': 'Test: discriminative_e_recall: e_recall@4',
    'NMI': 'Test: discriminative_nmi: nmi',
    'F1': 'Test: discriminative_f1: f1',
    'mAP': 'Test: discriminative_mAP: mAP',
}
# Aggregated the same way, but only when at least one run logged them (this project's defaults do).
OPTIONAL_METRIC_KEYS = {
    'R@5': 'Test: discriminative_e_recall: e_recall@5',
    'R@10': 'Test: discriminative_e_recall: e_recall@10',
    'mAP@R': 'Test: discriminative_mAP_c: mAP_c',
    'mAP@1000': 'Test: discriminative_mAP_1000: mAP_1000',
    'mAP_lim': 'Test: discriminative_mAP_lim: mAP_lim',
    # the customary ks of In-Shop (1, 10, 20, 30, 40) and iNaturalist (1, 4, 16, 32), and Musgrave et al.'s MAP@R
    'R@16': 'Test: discriminative_e_recall: e_recall@16',
    'R@20': 'Test: discriminative_e_recall: e_recall@20',
    'R@30': 'Test: discriminative_e_recall: e_recall@30',
    'R@32': 'Test: discriminative_e_recall: e_recall@32',
    'R@40': 'Test: discriminative_e_recall: e_recall@40',
    'MAP@R': 'Test: discriminative_mAP: mAP@R',
}
# Train embedding statistics read at the best-R@1 row.
STAT_KEYS = {
    'Intra_over_Inter': 'Train: discriminative_dists: dists@intra_over_inter',
    'Intra': 'Train: discriminative_dists: dists@intra',
    'Inter': 'Train: discriminative_dists: dists@inter',
    'Rho1': 'Train: discriminative_rho_spectrum: rho_spectrum@-1',
    'Rho2': 'Train: discriminative_rho_spectrum: rho_spectrum@1',
    'Rho3': 'Train: discriminative_rho_spectrum: rho_spectrum@2',
    'Rho4': 'Train: discriminative_rho_spectrum: rho_spectrum@10',
}
BEST_METRIC = 'R@1'
MIN_LENGTH = 40
SELECTIONS = ('max', 'best_r1', 'best_val', 'last')
VAL_SUFFIX = ' at best Val'
VAL_EPOCH = 'Val_Epoch'
BEST_OVER_EPOCHS = BEST_METRIC + ' best over epochs'  # kept whatever the selection, for the overview
DATASET_TAGS = (('CUB', 'CUB'), ('CAR', 'CARS'), ('SOP', 'SOP'), ('InShop', 'InShop'), ('iNat', 'iNat'))
DATASET_OPTIONS = {'cub200': 'CUB', 'cars196': 'CARS', 'online_products': 'SOP', 'inshop': 'InShop',
                   'inaturalist': 'iNat'}


@dataclasses.dataclass
class GroupResult:
    """`values[name] = (mean, std)` over the `n_runs` runs that passed the length filter."""
    group: str
    dataset: str
    n_runs: int
    seeds: list
    values: dict
    n_unfinished: int = 0   # runs left out because they have not finished (no training_summary.txt)
    n_short: int = 0        # runs left out by the length filter
    per_run: dict = dataclasses.field(default_factory=dict)   # {name: the runs' values, in `seeds` order}
    ci: dict = dataclasses.field(default_factory=dict)        # {name: t-interval half-width} with --ci


def dataset_of(group, config):
    """CUB / CARS / SOP / InShop / iNat by substring of the group; else by the run's `--dataset` option
    (a benchmark name maps to its tag, any other name is kept); else 'other'."""
    for tag, dataset in DATASET_TAGS:
        if tag in group:
            return dataset
    option = str(config.get('dataset') or 'other')
    return DATASET_OPTIONS.get(option, option)


def numeric_column(history, key):
    return pd.to_numeric(history[key], errors='coerce').to_numpy(dtype=float)


def best_row(history, key):
    """Row position of the NaN-ignoring maximum of `key`, or None if it was not logged or is all NaN."""
    if key not in history.columns:
        return None
    column = numeric_column(history, key)
    if not np.isfinite(column).any():
        return None
    return int(np.nanargmax(column))


def run_values(history, metric_keys, stat_keys, selection, missing):
    """One run's contributions: {name: value}; names of keys the run lacks are added to `missing`."""
    values = {}
    best = best_row(history, metric_keys[BEST_METRIC]) if BEST_METRIC in metric_keys else None
    for name, key in metric_keys.items():
        if key not in history.columns:
            missing[name] += 1
            values[name] = np.nan
        elif selection == 'best_r1':
            values[name] = numeric_column(history, key)[best] if best is not None else np.nan
        elif selection == 'last':   # the last logged value (runs without a validation split, e.g. tuned ones)
            column = numeric_column(history, key)
            finite = column[np.isfinite(column)]
            values[name] = float(finite[-1]) if len(finite) else np.nan
        else:
            column = numeric_column(history, key)
            values[name] = float(np.nanmax(column)) if np.isfinite(column).any() else np.nan
    steps = numeric_column(history, '_step') if '_step' in history.columns else np.arange(len(history))
    values['Max_Epoch'] = float(steps[best]) if best is not None else np.nan
    if selection == 'last':
        values['Max_Epoch'] = float(steps[-1]) if len(steps) else np.nan
    for name, key in stat_keys.items():
        if key not in history.columns:
            missing[name] += 1
            values[name] = np.nan
        else:
            values[name] = numeric_column(history, key)[best] if best is not None else np.nan
    return values


def val_key(config):
    """The history key of the run's Val storage metric (first --storage_metrics of the first --evaltypes)."""
    metrics = config.get('storage_metrics') or ['e_recall@1']
    evaltypes = config.get('evaltypes') or ['discriminative']
    metric = str(metrics[0] if isinstance(metrics, (list, tuple)) else metrics)
    evaltype = str(evaltypes[0] if isinstance(evaltypes, (list, tuple)) else evaltypes)
    return 'Val: {}: {}'.format(val_selection.storage_group(evaltype, metric), metric)


def column_epochs(history, key):
    """Epoch of each row of `key`: its log's `epochs` column (logs evaluated every N epochs have one),
    else `_step` (the epoch), else None (the row index)."""
    sub_logger, _, rest = key.partition(': ')
    group = rest.split(': ')[0]
    for candidate in ('{}: {}: epochs'.format(sub_logger, group), '{}: epochs'.format(sub_logger), '_step'):
        if candidate in history.columns:
            return numeric_column(history, candidate)
    return None


def val_selected_values(history, metric_keys, stat_keys, key):
    """{`<name> at best Val`: value at the best-Val epoch, 'Val_Epoch': that epoch}; None without a Val log."""
    if key not in history.columns:
        return None
    columns = {name: (numeric_column(history, k), column_epochs(history, k))
               for name, k in list(metric_keys.items()) + list(stat_keys.items()) if k in history.columns}
    chosen = val_selection.select_by_validation(numeric_column(history, key), column_epochs(history, key), columns)
    values = {name + VAL_SUFFIX: chosen.test_values.get(name, np.nan) for name in list(metric_keys) + list(stat_keys)}
    values[VAL_EPOCH] = np.nan if chosen.epoch is None else float(chosen.epoch)
    return values


def mean_std(values):
    """(mean, population std); (NaN, NaN) for no values."""
    if not len(values):
        return np.nan, np.nan
    array = np.asarray(values, dtype=float)
    return float(np.mean(array)), float(np.std(array))


def active_metric_keys(runs, metric_keys, optional_keys):
    """The required keys plus every optional key that some run logged."""
    logged = set()
    for run in runs:
        logged.update(run.history.columns)
    keys = dict(metric_keys)
    keys.update({name: key for name, key in optional_keys.items() if key in logged and name not in keys})
    return keys


def aggregate(runs, metric_keys=None, optional_keys=None, stat_keys=None, min_length=MIN_LENGTH,
              selection='max', include_unfinished=False):
    """{group: GroupResult} in sorted group order."""
    if selection not in SELECTIONS:
        raise ValueError('selection must be one of {}, got {!r}'.format(', '.join(SELECTIONS), selection))
    required = METRIC_KEYS if metric_keys is None else metric_keys
    metric_keys = active_metric_keys(runs, required,
                                     OPTIONAL_METRIC_KEYS if optional_keys is None else optional_keys)
    optional_names = set(metric_keys) - set(required)
    stat_keys = STAT_KEYS if stat_keys is None else stat_keys
    names = list(metric_keys) + ['Max_Epoch'] + list(stat_keys) + ([BEST_OVER_EPOCHS] if BEST_METRIC in metric_keys else [])
    with_val = selection == 'best_val' or any(val_key(run.config) in run.history.columns for run in runs)
    val_names = [name + VAL_SUFFIX for name in list(metric_keys) + list(stat_keys)] + [VAL_EPOCH] if with_val else []
    by_group = collections.defaultdict(list)
    for run in runs:
        by_group[run.group].append(run)
    missing = collections.Counter()
    n_used = n_without_val = 0
    results = {}
    for group in sorted(by_group):
        collected = {name: [] for name in names + val_names}
        seeds = []
        n_unfinished = n_short = 0
        for run in by_group[group]:
            if not getattr(run, 'finished', True) and not include_unfinished:
                n_unfinished += 1
                continue
            if not len(run.history) or len(run.history) <= min_length:
                n_short += 1
                continue
            n_used += 1
            seeds.append(run.seed)
            values = run_values(run.history, metric_keys, stat_keys, 'max' if selection == 'best_val' else selection,
                                missing)
            if BEST_METRIC in metric_keys:
                values[BEST_OVER_EPOCHS] = values[BEST_METRIC]
                if selection == 'last':   # the best over the epochs, whatever the tables show
                    values[BEST_OVER_EPOCHS] = run_values(run.history, {BEST_METRIC: metric_keys[BEST_METRIC]},
                                                          {}, 'max', collections.Counter())[BEST_METRIC]
            if with_val:
                by_val = val_selected_values(run.history, metric_keys, stat_keys, val_key(run.config))
                n_without_val += by_val is None
                by_val = by_val or {name: np.nan for name in val_names}
                values.update(by_val)
                if selection == 'best_val':
                    values.update({name: by_val[name + VAL_SUFFIX] for name in list(metric_keys) + list(stat_keys)})
                    values['Max_Epoch'] = by_val[VAL_EPOCH]
            for name, value in values.items():
                collected[name].append(value)
        if not seeds and n_short:
            warnings.warn('group {}: no run has more than {} logged epochs; its values are NaN'.format(
                group, min_length), stacklevel=2)
        elif not seeds:
            warnings.warn('group {}: no run has finished yet (no training_summary.txt); its values are NaN'
                          .format(group), stacklevel=2)
        results[group] = GroupResult(group=group, dataset=dataset_of(group, by_group[group][0].config),
                                     n_runs=len(seeds), seeds=seeds,
                                     values={name: mean_std(collected[name]) for name in names + val_names},
                                     n_unfinished=n_unfinished, n_short=n_short,
                                     per_run={name: list(collected[name]) for name in names + val_names})
    not_logged = [name for name in names if missing[name] and name not in optional_names]
    if not_logged:
        warnings.warn(missing_metrics_line(not_logged, missing, n_used), stacklevel=2)
    if selection == 'best_val' and n_without_val:
        warnings.warn('{} of {} runs have no Val log (trained without --use_tv_split): their values at the '
                      'best-Val epoch are NaN'.format(n_without_val, n_used), stacklevel=2)
    return results


def missing_metrics_line(not_logged, missing, n_used):
    """One line for every metric some runs did not log (e.g. the Train statistics of runs trained with
    --no_train_metrics), instead of one warning per column."""
    counts = {missing[name] for name in not_logged}
    if counts == {n_used}:
        listed = ', '.join(not_logged)
        scope = 'by any of the {} runs'.format(n_used)
    else:
        listed = ', '.join('{} ({} of {})'.format(name, missing[name], n_used) for name in not_logged)
        scope = 'by some of the {} runs'.format(n_used)
    return 'not logged {}: {} (NaN for those runs, shown as -; --metric_key names other keys)'.format(scope, listed)
