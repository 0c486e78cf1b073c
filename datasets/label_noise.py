"""Noisy training labels, reproducing the reference bit for bit (same seed, same labels).

The reference draws `RandomState(seed).multinomial(1, P[y_i], size=1)` once per sample in image_list
order. The legacy generator consumes a data-dependent amount of its stream per draw, so the draws
cannot be batched: one call per sample is what makes the labels identical for the same seed.
Rows of P are formed on the fly (same float64 values as the full matrix) because C×C float64 is
1 GB for SOP's 11318 classes.
"""
import numpy as np

from datasets.errors import DatasetError

NOISE_TYPES = ('symmetric', 'pairflip')


def transition_row(noise_type, n_classes, ratio, label):
    """Row `label` of P: symmetric = r/(C-1) everywhere and 1-r on the diagonal; pair flip =
    1-r on the diagonal and r at (label+1) mod C."""
    if noise_type == 'symmetric':
        row = np.full(n_classes, ratio / (n_classes - 1), dtype=np.float64)
    else:
        row = np.zeros(n_classes, dtype=np.float64)
        row[(label + 1) % n_classes] = ratio
    row[label] = 1.0 - ratio
    return row


def transition_matrix(noise_type, n_classes, ratio):
    """The full C×C transition matrix P (for inspection and small C)."""
    check_noise_options(noise_type, n_classes, ratio)
    return np.stack([transition_row(noise_type, n_classes, ratio, label) for label in range(n_classes)])


def check_noise_options(noise_type, n_classes, ratio):
    if noise_type not in NOISE_TYPES:
        raise DatasetError('Unknown --noisy_type {!r}: choose one of {}.'.format(noise_type, ', '.join(NOISE_TYPES)))
    if not 0.0 <= ratio <= 1.0:
        raise DatasetError('--noisy_ratio must lie in [0, 1], got {}.'.format(ratio))
    if n_classes < 2:
        raise DatasetError('--noisy_label needs at least 2 training classes, got {}.'.format(n_classes))
    # Every row holds the same values (permuted), so checking one row checks P (reference asserts).
    row = transition_row(noise_type, n_classes, ratio, 0)
    if round(row.sum() - 1.0, 6) != 0 or (row < 0).any():
        raise DatasetError('--noisy_ratio {} gives a transition matrix whose rows are not distributions.'.format(ratio))


def flip_labels(labels, n_classes, ratio, seed, noise_type='symmetric'):
    """Noisy label of each clean label in `labels` (integers in 0..C-1, image_list order)."""
    check_noise_options(noise_type, n_classes, ratio)
    labels = [int(label) for label in labels]
    if labels and not 0 <= min(labels) <= max(labels) < n_classes:
        raise DatasetError('--noisy_label needs training labels in 0..{}, got {}..{}.'
                           .format(n_classes - 1, min(labels), max(labels)))
    flipper = np.random.RandomState(seed)
    noisy, row_label, row = [], None, None
    for label in labels:
        if label != row_label:  # image_list is grouped by class: one row per class run
            row_label, row = label, transition_row(noise_type, n_classes, ratio, label)
        noisy.append(int(np.flatnonzero(flipper.multinomial(1, row, size=1)[0])[0]))
    return noisy
