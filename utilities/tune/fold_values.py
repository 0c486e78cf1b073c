"""A fold run's value: the objective metric on Val at the run's best epoch (the epoch the trainer keeps its
checkpoint for: the first maximum of the first --storage_metrics on Val)."""
import csv
import math
import os

from utilities.results.selection import best_epoch


def val_column(run_folder, evaltype, metric):
    """The Val values of `metric` per evaluated epoch, [] when the log does not exist."""
    group = metric.split('@')[0]
    path = os.path.join(run_folder, 'CSV_Logs', 'Data_Val_{}_{}.csv'.format(evaltype, group))
    if not os.path.isfile(path):
        return []
    with open(path, newline='') as handle:
        rows = list(csv.DictReader(handle))
    return [float(row[metric]) if row.get(metric) not in (None, '') else math.nan for row in rows]


def fold_value(run_folder, objective, storage_metric, evaltype):
    """The objective at the best-Val epoch of `storage_metric`; NaN when the run logged no finite value."""
    selection = val_column(run_folder, evaltype, storage_metric)
    values = val_column(run_folder, evaltype, objective)
    row, _ = best_epoch(selection)   # row index: one row per evaluation
    if row is None or row >= len(values):
        return math.nan
    return values[row]
