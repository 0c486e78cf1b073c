"""Train/validation split of the training part (`--use_tv_split`, or a cross-validation fold).

By classes: the first ⌊|T|·p⌋ sorted training classes train, the rest validate. By samples: each class
keeps ⌊n·p⌋ of its images for training, chosen by a per-dataset rule below; validation gets the
remaining positions in ascending order.

Cross-validation folds (`--cv_folds K --cv_fold i`, which imply `--use_tv_split` and replace
`--tv_split_perc`): fold i holds the sorted training classes at positions i, i+K, i+2K, ... (by classes), or
the images at those positions in every class's file order (`--tv_split_by_samples`). Fold i validates, the
other K-1 folds train; the K folds are disjoint and together cover every training class (every image).
"""
import numpy as np


def fold_choice(opt):
    """(K, i) of `--cv_folds K --cv_fold i`, or None without folds."""
    return (opt.cv_folds, opt.cv_fold) if getattr(opt, 'cv_folds', 0) else None


def in_fold(position, folds):
    n_folds, fold = folds
    return position % n_folds == fold


def split_classes(train_keys, perc, folds=None):
    if folds:
        return ([key for j, key in enumerate(train_keys) if not in_fold(j, folds)],
                [key for j, key in enumerate(train_keys) if in_fold(j, folds)])
    cut = int(len(train_keys) * perc)
    return train_keys[:cut], train_keys[cut:]


def evenly_spaced_positions(n, perc):
    """CUB: round(linspace(0, n-1, ⌊n·p⌋)) half-to-even, deduplicated, ascending (deterministic)."""
    return sorted(set(np.round(np.linspace(0, n - 1, int(n * perc))).astype(int).tolist()))


def random_positions(n, perc):
    """CARS: ⌊n·p⌋ positions drawn without replacement from numpy's global generator, in draw order."""
    return np.random.choice(n, int(n * perc), replace=False).tolist()


def first_positions(n, perc):
    """SOP: the first ⌊n·p⌋ images in file order."""
    return list(range(int(n * perc)))


def split_samples(paths, perc, rule, folds=None):
    """(training paths, validation paths) of one class under a position `rule`, or of fold `folds`."""
    if folds:
        return ([path for j, path in enumerate(paths) if not in_fold(j, folds)],
                [path for j, path in enumerate(paths) if in_fold(j, folds)])
    train_positions = rule(len(paths), perc)
    taken = set(train_positions)
    return ([paths[i] for i in train_positions],
            [path for i, path in enumerate(paths) if i not in taken])


def split_labelled_classes(train_dict, train_names, use_tv_split, by_samples, perc, rule=first_positions,
                           folds=None):
    """(train dict, train names, val dict, val names) of a training part whose labels already run 0..C-1:
    by classes, the last classes validate and both parts are re-keyed from 0; by samples, every class
    keeps its label and `rule` picks its training images. Without a split the validation part is None."""
    if not use_tv_split:
        return train_dict, train_names, None, None
    if not by_samples:
        train_keys, val_keys = split_classes(sorted(train_dict), perc, folds)
        return ({i: train_dict[key] for i, key in enumerate(train_keys)},
                {i: train_names[key] for i, key in enumerate(train_keys)},
                {i: train_dict[key] for i, key in enumerate(val_keys)},
                {i: train_names[key] for i, key in enumerate(val_keys)})
    train_part, val_part = {}, {}
    for key in sorted(train_dict):
        train_part[key], val_part[key] = split_samples(train_dict[key], perc, rule, folds)
    return train_part, dict(train_names), val_part, dict(train_names)


def check_rankable(image_dict, by_samples, perc, folds=None):
    """A validation split must be able to rank: Recall@k and mAP need at least two classes (with one class
    every neighbour is correct, so Val R@1 is 1.0 at every epoch) and a class with two images (a query
    needs a relevant gallery image). Raised at start-up, before any run folder exists; the dataset
    builders themselves accept any split."""
    from datasets.errors import DatasetError
    n_classes = len([key for key, paths in image_dict.items() if len(paths)])
    largest = max((len(paths) for paths in image_dict.values()), default=0)
    if n_classes >= 2 and largest >= 2:
        return
    problem = ('{} class{}'.format(n_classes, '' if n_classes == 1 else 'es') if n_classes < 2 else
               'no class with two images')
    if folds:
        raise DatasetError('--cv_fold {}: the validation fold cannot rank ({}, {} folds by {}); use {}.'.format(
            folds[1], problem, folds[0], 'samples' if by_samples else 'classes',
            'fewer --cv_folds' if by_samples else
            '--tv_split_by_samples (every training class keeps images for validation) or fewer --cv_folds'))
    hint = ('a different --tv_split_perc' if by_samples else
            '--tv_split_by_samples (every training class keeps images for validation) or a lower --tv_split_perc')
    raise DatasetError('--use_tv_split: the validation split cannot rank ({}, split by {} with --tv_split_perc {}); '
                       'use {}.'.format(problem, 'samples' if by_samples else 'classes', perc, hint))
