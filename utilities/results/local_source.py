"""Runs from this project's own run folders, shaped like W&B histories.

A run folder is any folder below `--path` that holds `CSV_Logs/`. Each
`CSV_Logs/Data_<SubLogger>_<group>.csv` column `<segment>` becomes the history column named by the
W&B key the logger pushes for it (`<SubLogger>: <group>` if group == segment, else
`<SubLogger>: <group>: <segment>`), one row per epoch, so both sources feed the same aggregation.
`Model Grad` files hold one row per iteration, not per epoch, and are left out.

The group is the saved `--group`; a run trained without one (the default `Sample_Group`) whose folder
is named `<configuration>_s<seed>` (the sweep tool's names) is grouped by that name without its seed.
A run folder without `training_summary.txt` has not finished (`Run.finished` False).
"""
import csv
import math
import os

import pandas as pd

from utilities.results.runs import ResultsError, Run, group_from_name, seed_from_name
from utilities.results.saved_options import read_run_options

SUB_LOGGERS = ('Model Grad', 'Train', 'Test', 'Val')
DEFAULT_GROUP = 'Sample_Group'  # the trainers' --group default
PER_ITERATION_SUB_LOGGERS = ('Model Grad',)


def find_run_folders(path):
    """Sorted folders below (or equal to) `path` that contain `CSV_Logs/`."""
    if not os.path.isdir(path):
        raise ResultsError('--path {}: no such folder'.format(path))
    found = []
    for root, dirs, _ in os.walk(path):
        if 'CSV_Logs' in dirs:
            found.append(root)
        dirs[:] = sorted(d for d in dirs if d not in ('CSV_Logs', 'Progression_Plots'))
    if not found:
        raise ResultsError('--path {}: no run folder (a folder holding CSV_Logs/) below it'.format(path))
    return sorted(found)


def split_csv_name(file_name):
    """`Data_<SubLogger>_<group>.csv` → (sub-logger, group); None for other files."""
    if not (file_name.startswith('Data_') and file_name.endswith('.csv')):
        return None
    stem = file_name[len('Data_'):-len('.csv')]
    for sub_logger in SUB_LOGGERS:
        if stem.startswith(sub_logger + '_'):
            return sub_logger, stem[len(sub_logger) + 1:]
    sub_logger, _, group = stem.partition('_')
    return (sub_logger, group) if group else None


def to_number(text):
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_csv_columns(path):
    """{segment: [values]}; a repeated header row (a file appended to by a second process) is skipped."""
    with open(path, newline='', encoding='utf-8', errors='replace') as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        return {}
    header = rows[0]
    body = [row for row in rows[1:] if row != header]
    return {segment: [to_number(row[i]) if i < len(row) else math.nan for row in body]
            for i, segment in enumerate(header)}


def history_key(sub_logger, group, segment):
    return '{}: {}'.format(sub_logger, group) if group == segment else \
        '{}: {}: {}'.format(sub_logger, group, segment)


def read_history(run_dir):
    """One row per epoch; `_step` = the logged `Train: epochs` value where present, else the row number."""
    csv_dir = os.path.join(run_dir, 'CSV_Logs')
    columns = {}
    for file_name in sorted(os.listdir(csv_dir)):
        parts = split_csv_name(file_name)
        if parts is None or parts[0] in PER_ITERATION_SUB_LOGGERS:
            continue
        for segment, values in read_csv_columns(os.path.join(csv_dir, file_name)).items():
            columns[history_key(parts[0], parts[1], segment)] = pd.Series(values, dtype=float)
    history = pd.DataFrame(columns)
    if len(history):
        epochs = history.get('Train: epochs')
        history.insert(0, '_step', epochs if epochs is not None and epochs.notna().all()
                       else pd.Series(range(len(history)), dtype=float))
    return history


def load_local_runs(path):
    """Every run folder below `path` as a Run; group and seed from its saved options, else its folder name."""
    runs = []
    for run_dir in find_run_folders(path):
        options, _ = read_run_options(run_dir)
        name = os.path.basename(os.path.normpath(run_dir))
        group = options.get('group')
        seed = options.get('seed')
        if not isinstance(group, str) or not group or (group == DEFAULT_GROUP and group_from_name(name) != name):
            group = group_from_name(name)  # no --group given: `<configuration>_s<seed>` names the group
        if seed is None:
            seed = seed_from_name(name)
        runs.append(Run(name=name, group=group, seed=seed, history=read_history(run_dir),
                        config={k: v for k, v in options.items() if not str(k).startswith('_')},
                        origin=run_dir, finished=os.path.isfile(os.path.join(run_dir, 'training_summary.txt'))))
    return runs
