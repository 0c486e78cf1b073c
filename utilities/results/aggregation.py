"""Best values per run, mean ± std per group (spec data_metrics.md §E.3-E.4).

Per run whose history has more than `min_length` rows: every metric's NaN-ignoring maximum over the
epochs ('max', the reference), or its value at the best-R@1 epoch ('best_r1'); the epoch of the best
R@1 (`Max_Epoch`, the `_step` of that row: the epoch even when W&B sampled the history, where the
reference's row index is not); the Train embedding statistics at that row. Per group: mean and
standard deviation (ddof 0) over its runs. A key a run did not log counts as NaN for that run (its
group's mean is then NaN, shown as '-'); one warning per key says how many runs lack it (optional
keys, aggregated only because some run logged them, are not warned about).
"""
import collections
import dataclasses
import warnings

import numpy as np
import pandas as pd

# short name -> W&B key (§E.3); the keys a missing value is warned about.
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
}
# Train embedding statistics read at the best-R@1 row (§E.3).
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
SELECTIONS = ('max', 'best_r1')
DATASET_TAGS = (('CUB', 'CUB'), ('CAR', 'CARS'), ('SOP', 'SOP'))
DATASET_OPTIONS = {'cub200': 'CUB', 'cars196': 'CARS', 'online_products': 'SOP'}


@dataclasses.dataclass
class GroupResult:
    """`values[name] = (mean, std)` over the `n_runs` runs that passed the length filter."""
    group: str
    dataset: str
    n_runs: int
    seeds: list
    values: dict


def dataset_of(group, config):
    """CUB / CARS / SOP by substring of the group (§E.4); else by the run's `--dataset` option (a benchmark
    name maps to its tag, any other name is kept); else 'other'."""
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
        else:
            column = numeric_column(history, key)
            values[name] = float(np.nanmax(column)) if np.isfinite(column).any() else np.nan
    steps = numeric_column(history, '_step') if '_step' in history.columns else np.arange(len(history))
    values['Max_Epoch'] = float(steps[best]) if best is not None else np.nan
    for name, key in stat_keys.items():
        if key not in history.columns:
            missing[name] += 1
            values[name] = np.nan
        else:
            values[name] = numeric_column(history, key)[best] if best is not None else np.nan
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
              selection='max'):
    """{group: GroupResult} in sorted group order (§E.4)."""
    if selection not in SELECTIONS:
        raise ValueError('selection must be one of {}, got {!r}'.format(', '.join(SELECTIONS), selection))
    required = METRIC_KEYS if metric_keys is None else metric_keys
    metric_keys = active_metric_keys(runs, required,
                                     OPTIONAL_METRIC_KEYS if optional_keys is None else optional_keys)
    optional_names = set(metric_keys) - set(required)
    stat_keys = STAT_KEYS if stat_keys is None else stat_keys
    names = list(metric_keys) + ['Max_Epoch'] + list(stat_keys)
    by_group = collections.defaultdict(list)
    for run in runs:
        by_group[run.group].append(run)
    missing = collections.Counter()
    n_used = 0
    results = {}
    for group in sorted(by_group):
        collected = {name: [] for name in names}
        seeds = []
        for run in by_group[group]:
            if not len(run.history) or len(run.history) <= min_length:
                continue
            n_used += 1
            seeds.append(run.seed)
            for name, value in run_values(run.history, metric_keys, stat_keys, selection, missing).items():
                collected[name].append(value)
        if not seeds:
            warnings.warn('group {}: no run has more than {} logged epochs; its values are NaN'.format(
                group, min_length), stacklevel=2)
        results[group] = GroupResult(group=group, dataset=dataset_of(group, by_group[group][0].config),
                                     n_runs=len(seeds), seeds=seeds,
                                     values={name: mean_std(collected[name]) for name in names})
    for name in names:
        if missing[name] and name not in optional_names:
            key = metric_keys.get(name, stat_keys.get(name))
            warnings.warn('{} (key {!r}) was not logged by {} of {} runs: NaN for those runs, shown as -'.format(
                name, key, missing[name], n_used), stacklevel=2)
    return results
