"""Model selection without the test set: the Test metrics at the epoch of the best Val value.

Picking the reported epoch by the best Test recall selects on the test set, which inflates results
("A Metric Learning Reality Check", Musgrave et al., ECCV 2020). Here the epoch is chosen on the
validation split (--use_tv_split) by the storage metric, and the Test values are read at that epoch.

Tie rule: the FIRST epoch at which the Val value is maximal (NaN values are ignored). A row's epoch
is the log's `epochs` value where the log has one (evaluation every N epochs logs fewer rows than
there are epochs), else its row index.
"""
import dataclasses
import math

import numpy as np

NON_METRIC_SEGMENTS = ('epoch', 'epochs', 'time')  # as in the logger


@dataclasses.dataclass
class ValSelection:
    """`epoch` chosen on Val (None when Val has no finite value), the Val value there, and
    {name: Test value at that epoch} (NaN where the Test log has no row for that epoch)."""
    epoch: object
    val_value: float
    test_values: dict


def row_epochs(n_rows, epochs=None):
    """The epoch of each row: the logged `epochs` values when there is one per row, else 0..n-1."""
    if epochs is not None and len(epochs) == n_rows:
        return np.asarray(epochs, dtype=float)
    return np.arange(n_rows, dtype=float)


def best_epoch(values, epochs=None):
    """(epoch, value) of the first maximal finite value; (None, NaN) if there is none."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return None, math.nan
    row = int(np.argmax(np.where(finite, values, -np.inf)))  # argmax returns the first maximum
    epoch = row_epochs(len(values), epochs)[row]
    return (int(epoch) if float(epoch).is_integer() else float(epoch)), float(values[row])


def value_at_epoch(values, epochs, epoch):
    """The value logged at `epoch` (its first row), NaN if the log has no row for it."""
    values = np.asarray(values, dtype=float)
    if epoch is None:
        return math.nan
    rows = np.flatnonzero(row_epochs(len(values), epochs) == epoch)
    return float(values[rows[0]]) if len(rows) else math.nan


def select_by_validation(val_values, val_epochs, test_columns):
    """`test_columns`: {name: (values, epochs or None)}; returns a ValSelection."""
    epoch, val_value = best_epoch(val_values, val_epochs)
    return ValSelection(epoch=epoch, val_value=val_value,
                        test_values={name: value_at_epoch(values, epochs, epoch)
                                     for name, (values, epochs) in test_columns.items()})


def storage_group(evaltype, storage_metric):
    """Progress-saver group of a metric, `<evaltype>_<name before '@'>`, as the evaluation logs it."""
    return '{}_{}'.format(evaltype, storage_metric.split('@')[0])


def saver_epochs(groups, group):
    """Epochs of the rows of `group` in a progress saver's `groups`: its own `epochs` segment, else the
    sub-logger's `epochs` group, else None (row index)."""
    for source in (groups.get(group, {}), groups.get('epochs', {})):
        if 'epochs' in source:
            return list(source['epochs']['content'])
    return None


def val_selected_lines(val_groups, test_groups, metric, evaltype):
    """The Test groups' values at the best-Val epoch of `metric` (first maximum), one line per group."""
    group = storage_group(evaltype, metric)
    if metric not in val_groups.get(group, {}):
        return []
    chosen = best_epoch(val_groups[group][metric]['content'], saver_epochs(val_groups, group))
    if chosen[0] is None:
        return []
    lines = ['SELECTION: TEST lines above are each metric\'s best over the epochs (chosen on the test set); '
             'TEST AT BEST VAL lines are the Test values at epoch {} (first epoch of the best Val {}: {}: {:.4f})'
             .format(chosen[0], group, metric, chosen[1])]
    for test_group, segments_dict in test_groups.items():
        epochs = saver_epochs(test_groups, test_group)
        parts = ['{}: {:.4f}'.format(segment, value_at_epoch(entry['content'], epochs, chosen[0]))
                 for segment, entry in segments_dict.items() if segment not in NON_METRIC_SEGMENTS]
        if parts:
            lines.append('TEST AT BEST VAL metrics (epoch {}): {}: {}'.format(chosen[0], test_group, '  |  '.join(parts)))
    return lines
