"""Checkpoint on improvement: the best value of every (split, evaltype, storage metric) is kept here, as
timm's CheckpointSaver keeps its best metric, and a checkpoint is written when a new value beats it.

The rule is the reference's: the first evaluation of a split always saves; later ones save only when
strictly greater than every earlier value (a tie keeps the older checkpoint; after a NaN nothing beats
the best, as numpy's max of the history is NaN).
"""
import numpy as np

from evaluation.reporting import metric_group
from utilities.atomic import atomic_torch_save


class CheckpointSaver:
    """Writes `<folder>/checkpoint_<split>_<evaltype>_<metric>.pth.tar` for each of `storage_metrics`
    (scalar metric names) of each of `evaltypes`."""

    def __init__(self, folder, *, storage_metrics, evaltypes):
        self.folder = folder
        self.storage_metrics, self.evaltypes = list(storage_metrics), list(evaltypes)
        self.best = {}   # (split, evaltype, metric) -> best value so far

    def restore(self, progress_savers):
        """The best values of a resumed run: the maximum of every value its restored logs hold
        ({split: utilities.logger.Progress_Saver}), exactly what the uninterrupted run had seen."""
        self.best = {}
        for split, saver in progress_savers.items():
            for evaltype in self.evaltypes:
                for metric in self.storage_metrics:
                    history = saver.groups.get(metric_group(evaltype, metric), {}).get(metric)
                    if history is not None and len(history['content']):
                        self.best[(split, evaltype, metric)] = np.max(history['content'])

    def improved(self, split, evaltype, metric, value):
        """Whether `value` is a new best (then it is recorded as such); the best is updated either way."""
        key = (split, evaltype, metric)
        best = self.best.get(key)
        self.best[key] = value if best is None else np.maximum(best, value)
        return best is None or value > best

    def save_improved(self, split, metrics, *, contents):
        """Checkpoint every storage metric of `metrics` ({evaltype: {name: value}}, one evaluation of `split`)
        that improved; `contents()` builds the checkpoint dict (called only when one is written). Returns
        the paths written."""
        written = []
        for evaltype in self.evaltypes:
            for metric in self.storage_metrics:
                if metric not in metrics.get(evaltype, {}):
                    raise ValueError('--storage_metrics {} is not a computed scalar metric; add it to '
                                     '--evaluation_metrics.'.format(metric))
                if self.improved(split, evaltype, metric, metrics[evaltype][metric]):
                    print('Saved weights for best {}: {}\n'.format(split, metric_group(evaltype, metric)))
                    path = '{}/checkpoint_{}_{}_{}.pth.tar'.format(self.folder, split, evaltype, metric)
                    atomic_torch_save(contents(), path)
                    written.append(path)
        return written
