"""Noisy labels bit for bit against the reference procedure and worked examples."""
import numpy as np
import pytest

from datasets.errors import DatasetError
from datasets.label_noise import flip_labels, transition_matrix


def reference_noisify(labels, n_classes, ratio, seed, pairflip=False):
    """The reference's procedure, written out independently: full float64 matrix P, one legacy
    RandomState, one `multinomial(1, P[y], 1)` per sample in order."""
    P = np.ones((n_classes, n_classes)) * (ratio / (n_classes - 1))
    if pairflip:
        P = np.eye(n_classes)
        for i in range(n_classes):
            P[i, i], P[i, (i + 1) % n_classes] = 1.0 - ratio, ratio
    else:
        for i in range(n_classes):
            P[i, i] = 1.0 - ratio
    flipper = np.random.RandomState(seed)
    y = np.asarray(labels)[:, None]
    noisy = y.copy()
    for idx in range(len(y)):
        flipped = flipper.multinomial(1, P[y[idx], :][0], 1)[0]
        noisy[idx] = np.where(flipped == 1)[0][0]
    return noisy[:, 0].tolist()


FIVE_BY_FOUR = [c for c in range(5) for _ in range(4)]


@pytest.mark.parametrize('seed,kind,expected', [
    (0, 'symmetric', [0, 4, 2, 2, 1, 0, 1, 2, 1, 4, 3, 4, 3, 1, 3, 3, 4, 1, 4, 4]),
    (1, 'symmetric', [0, 4, 0, 0, 1, 1, 1, 1, 2, 3, 3, 2, 4, 3, 4, 3, 1, 4, 4, 4]),
    (0, 'pairflip', [0, 1, 0, 0, 2, 2, 1, 2, 2, 3, 2, 2, 4, 4, 4, 4, 0, 4, 0, 4])])
def test_spec_vectors_five_classes(seed, kind, expected):
    assert flip_labels(FIVE_BY_FOUR, 5, 0.4, seed, kind) == expected


def test_spec_vector_hundred_classes():
    clean = [c for c in range(100) for _ in range(5)]
    noisy = flip_labels(clean, 100, 0.3, 0)
    assert sum(a != b for a, b in zip(clean, noisy)) == 146
    assert sum(noisy) == 24332
    assert noisy[:20] == [0, 51, 0, 0, 0, 1, 1, 1, 1, 1, 83, 2, 57, 2, 2, 3, 3, 61, 3, 3]


@pytest.mark.parametrize('seed,ratio,pairflip', [(2, 0.25, False), (7, 0.8, False), (5, 0.3, True)])
def test_matches_the_reference_procedure(seed, ratio, pairflip):
    clean = sorted(np.random.RandomState(seed).randint(0, 13, 300).tolist())
    kind = 'pairflip' if pairflip else 'symmetric'
    assert flip_labels(clean, 13, ratio, seed, kind) == reference_noisify(clean, 13, ratio, seed, pairflip)


def test_matrices():
    symmetric = transition_matrix('symmetric', 4, 0.3)
    assert symmetric.dtype == np.float64
    np.testing.assert_array_equal(np.diag(symmetric), [0.7] * 4)
    assert symmetric[0, 1] == 0.3 / 3 and symmetric[3, 2] == 0.3 / 3
    pairflip = transition_matrix('pairflip', 4, 0.3)
    np.testing.assert_array_equal(pairflip, [[0.7, 0.3, 0, 0], [0, 0.7, 0.3, 0], [0, 0, 0.7, 0.3], [0.3, 0, 0, 0.7]])


def test_zero_ratio_keeps_labels_and_global_numpy_state_is_untouched():
    np.random.seed(11)
    before = np.random.get_state()[1].copy()
    assert flip_labels(FIVE_BY_FOUR, 5, 0.0, 3) == FIVE_BY_FOUR
    assert flip_labels(FIVE_BY_FOUR, 5, 0.0, 3, 'pairflip') == FIVE_BY_FOUR
    np.testing.assert_array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize('kwargs,message', [
    (dict(noise_type='asymmetric'), '--noisy_type'),
    (dict(ratio=1.5), '--noisy_ratio'),
    (dict(ratio=-0.1), '--noisy_ratio'),
    (dict(n_classes=1, labels=[0, 0]), 'at least 2'),
    (dict(labels=[0, 5]), 'labels in 0..4')])
def test_bad_noise_options(kwargs, message):
    arguments = dict(labels=FIVE_BY_FOUR, n_classes=5, ratio=0.4, seed=0, noise_type='symmetric')
    arguments.update(kwargs)
    with pytest.raises(DatasetError, match=message):
        flip_labels(**arguments)
