"""Sampling distributions of the batch miners against probabilities computed here, slowly and
independently, from each miner's stated formula in float64 numpy.

Each test draws N calls under a fixed torch seed and compares every (anchor, positive, negative)
cell: the per-call frequency f must satisfy |f − p| <= 5·sqrt(p(1 − p)/N), a 5-sigma binomial
bound (N·f is Binomial(N, p) because a cell occurs at most once per call), and a cell with p = 0
must never occur. Each test also asserts that its geometry exercises the rule under test (for
example that the specified distribution is far from uniform), so that a wrong rule fails.
"""
import itertools

import numpy as np
import pytest
import torch

import batch_mining
import parameters

N_DRAWS = 2000


pytestmark = pytest.mark.usefixtures('single_thread')


def options(*argv):
    return parameters.read_arguments(list(argv))


def unit_rows(rows):
    return torch.nn.functional.normalize(torch.as_tensor(rows, dtype=torch.float32), dim=1)


def random_unit_batch(n, dim, seed):
    return unit_rows(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)))


def np_distances(batch, floor=0.0):
    """Euclidean distances from coordinate differences in float64: sqrt(max(‖x_i − x_j‖², floor))."""
    x = batch.double().numpy()
    return np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), floor))


def isd_probabilities(d_row, dim, negative):
    """The inverse-sphere weights written out: p_j ∝ [j negative]·d_j^(2−D)·(1 − d_j²/4)^(−(D−3)/2)."""
    safe = np.where(negative, d_row, 1.0)
    weights = np.where(negative, safe ** (2.0 - dim) * (1 - safe ** 2 / 4) ** (-(dim - 3) / 2), 0.0)
    return weights / weights.sum()


def positive_sets(labels):
    return [[j for j in range(len(labels)) if labels[j] == labels[a] and j != a] for a in range(len(labels))]


def empirical(miner, batch, labels, n_draws=N_DRAWS, seed=0):
    """Per-call frequency of every (a, p, n) cell and the triplet count of every call."""
    torch.manual_seed(seed)
    bs = batch.shape[0]
    draws = [miner(batch, labels) for _ in range(n_draws)]
    assert all(t.dtype == torch.int64 and t.shape[1:] == (3,) for t in draws)
    triplets = torch.cat(draws).numpy()
    cells = np.ravel_multi_index((triplets[:, 0], triplets[:, 1], triplets[:, 2]), (bs, bs, bs))
    counts = np.bincount(cells, minlength=bs ** 3).reshape(bs, bs, bs)
    return counts / n_draws, [len(t) for t in draws]


def assert_matches(frequency, probability, n_draws):
    assert np.all(frequency[probability == 0] == 0), 'a cell with probability 0 was drawn'
    bound = 5 * np.sqrt(probability * (1 - probability) / n_draws)
    excess = np.abs(frequency - probability) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, 'cell {}: frequency {:.4f}, specified {:.4f}'.format(
        worst, frequency[worst], probability[worst])


def assert_far_from_uniform_negatives(probability, labels, gap):
    """Premise: for some anchor the specified negative marginal differs from uniform over N(i)."""
    deviations = []
    for a in range(len(labels)):
        marginal = probability[a].sum(axis=0)
        if marginal.sum() > 0:
            negative = labels != labels[a]
            deviations.append(np.abs(marginal[negative] - 1.0 / negative.sum()).max())
    assert max(deviations) > gap


def at_chord_distance(origin, direction, chord):
    """The unit vector at Euclidean distance `chord` from the unit vector `origin`, towards `direction`."""
    side = direction - (direction @ origin) * origin
    angle = 2 * np.arcsin(chord / 2)
    return np.cos(angle) * origin + np.sin(angle) * side / np.linalg.norm(side)


def distance_geometry():
    """B = 8, D = 8, labels 0,0,0,1,1,2,2,3: negatives 3 and 4 of anchor 0 at 0.15 and 0.35, below
    the 0.5 lower cutoff, and negative 7 at 1.95, beyond the unused 1.4 upper cutoff; class 3 is a
    singleton."""
    rows = np.random.default_rng(3).standard_normal((8, 8))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    for position, chord in ((3, 0.15), (4, 0.35), (7, 1.95)):
        rows[position] = at_chord_distance(rows[0], rows[position], chord)
    return unit_rows(rows), np.array([0, 0, 0, 1, 1, 2, 2, 3])


# -- distance ---------------------------------------------------------------------------------

def expected_distance(batch, labels, lower_cutoff):
    bs, dim = batch.shape
    distances = np.maximum(np_distances(batch), lower_cutoff)
    probability = np.zeros((bs, bs, bs))
    for a, positives in enumerate(positive_sets(labels)):
        positives = positives or [a]
        negatives = isd_probabilities(distances[a], dim, labels != labels[a])
        for p in positives:
            probability[a, p] = negatives / len(positives)
    return probability


def test_distance_miner_matches_inverse_sphere_distribution_with_cutoff_clipping():
    batch, labels = distance_geometry()
    d = np_distances(batch)
    assert np.allclose(d[0, [3, 4, 7]], [0.15, 0.35, 1.95], atol=1e-6)
    probability = expected_distance(batch, labels, 0.5)
    assert np.isclose(probability[0, :, 3].sum(), probability[0, :, 4].sum())
    assert probability[0, :, 7].sum() > 0.05
    assert_far_from_uniform_negatives(probability, labels, gap=0.15)
    frequency, sizes = empirical(batch_mining.select('distance', options()), batch, torch.as_tensor(labels))
    assert set(sizes) == {8}
    assert_matches(frequency, probability, N_DRAWS)


def test_distance_miner_singleton_class_gets_itself_as_positive():
    batch, labels = distance_geometry()
    torch.manual_seed(0)
    triplets = batch_mining.select('distance', options())(batch, labels)
    assert triplets[:, 0].tolist() == list(range(8))
    assert triplets[7, 1] == 7


def test_distance_miner_upper_cutoff_is_not_applied():
    batch, labels = distance_geometry()
    draws = []
    for upper in (1.4, 0.6):
        miner = batch_mining.select('distance', options('--miner_distance_upper_cutoff', str(upper)))
        torch.manual_seed(5)
        draws.append(torch.cat([miner(batch, labels) for _ in range(200)]))
    assert torch.equal(draws[0], draws[1])
    far = np_distances(batch)[draws[0][:, 0], draws[0][:, 2]] > 1.4
    assert far.any()


def test_distance_miner_lower_cutoff_flag_is_read():
    batch, labels = distance_geometry()
    probability = expected_distance(batch, labels, 0.2)
    assert abs(probability[0, :, 3].sum() - probability[0, :, 4].sum()) > 0.1
    miner = batch_mining.select('distance', options('--miner_distance_lower_cutoff', '0.2'))
    frequency, _ = empirical(miner, batch, labels)
    assert_matches(frequency, probability, N_DRAWS)


def test_distance_miner_with_given_distances_and_target_labels():
    """Given distances are used unclamped; columns of the anchor's label are its positives, minus
    column i when there are two or more; an anchor with none is skipped (the reference mispairs every later
    triplet instead)."""
    batch = random_unit_batch(3, 8, seed=1)
    labels = np.array([0, 1, 5])
    tar_labels = np.array([0, 2, 1, 0, 2, 3])
    distances = torch.tensor([[0.3, 0.2, 0.9, 1.0, 0.45, 1.6],
                              [0.7, 0.3, 1.1, 0.25, 1.2, 0.8],
                              [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])
    miner = batch_mining.select('distance', options())
    torch.manual_seed(0)
    counts = np.zeros((2, 6))
    for _ in range(N_DRAWS):
        triplets = miner(batch, labels, tar_labels=tar_labels, distances=distances)
        assert triplets[:, 0].tolist() == [0, 1]
        assert triplets[:, 1].tolist() == [3, 2]
        counts[[0, 1], triplets[:, 2].numpy()] += 1
    probability = np.stack([isd_probabilities(distances[a].double().numpy(), 8, tar_labels != labels[a])
                            for a in range(2)])
    assert abs(probability[0, 1] - probability[0, 4]) > 0.1
    assert_matches(counts / N_DRAWS, probability, N_DRAWS)


# -- semihard and softhard --------------------------------------------------------------------

def test_semihard_miner_band_follows_drawn_positive_and_margin_of_base_loss():
    batch, labels = random_unit_batch(8, 3, seed=2), np.array([0, 0, 0, 1, 1, 2, 2, 3])
    margin = 0.35
    d = np_distances(batch)
    bs = len(labels)
    probability, band_sizes = np.zeros((bs, bs, bs)), []
    for a, positives in enumerate(positive_sets(labels)):
        if not positives:
            continue
        negatives = [n for n in range(bs) if labels[n] != labels[a]]
        for p in positives:
            band = [n for n in negatives if d[a, p] < d[a, n] < d[a, p] + margin]
            band_sizes.append(len(band))
            pool = band or negatives
            probability[a, p, pool] += 1.0 / len(positives) / len(pool)
            gaps = np.abs(np.concatenate([d[a, negatives] - d[a, p], d[a, negatives] - d[a, p] - margin]))
            assert gaps.min() > 1e-4
    assert 0 in band_sizes and max(band_sizes) >= 2
    miner = batch_mining.select('semihard', options('--loss', 'triplet_lsd', '--loss_triplet_margin', str(margin)))
    frequency, sizes = empirical(miner, batch, torch.as_tensor(labels))
    assert set(sizes) == {7}
    assert_matches(frequency, probability, N_DRAWS)


def test_softhard_miner_hard_sets_with_fallbacks():
    rows = random_unit_batch(8, 3, seed=4).double().numpy()
    rows[4] = at_chord_distance(rows[3], rows[4], 0.05)
    batch, labels = unit_rows(rows), np.array([0, 0, 0, 1, 1, 2, 2, 3])
    d = np_distances(batch)
    bs = len(labels)
    probability, fallbacks, hard = np.zeros((bs, bs, bs)), 0, 0
    for a, positives in enumerate(positive_sets(labels)):
        if not positives:
            continue
        negatives = [n for n in range(bs) if labels[n] != labels[a]]
        hard_positives = [p for p in positives if d[a, p] > d[a, negatives].min()]
        hard_negatives = [n for n in negatives if d[a, n] < d[a, positives].max()]
        fallbacks += (not hard_positives) + (not hard_negatives)
        pool_p, pool_n = hard_positives or positives, hard_negatives or negatives
        hard += (len(pool_p) < len(positives)) + (len(pool_n) < len(negatives))
        probability[a][np.ix_(pool_p, pool_n)] = 1.0 / len(pool_p) / len(pool_n)
    assert fallbacks > 0 and hard > 0
    assert_far_from_uniform_negatives(probability, labels, gap=0.1)
    frequency, sizes = empirical(batch_mining.select('softhard', options()), batch, labels)
    assert set(sizes) == {7}
    assert_matches(frequency, probability, N_DRAWS)


# -- rho_distance and random_distance ---------------------------------------------------------

def test_rho_distance_miner_push_and_regular_triplets():
    batch, labels = distance_geometry()
    cp, bs, dim = 0.3, 8, 8
    distances = np.maximum(np_distances(batch, floor=1e-4), 0.5)
    probability = np.zeros((bs, bs, bs))
    for a, positives in enumerate(positive_sets(labels)):
        if not positives:
            continue
        negatives = isd_probabilities(distances[a], dim, labels != labels[a])
        for p in positives:
            probability[a, a, p] += cp / len(positives)
            probability[a, p] += (1 - cp) * negatives / len(positives)
    assert_far_from_uniform_negatives(probability, labels, gap=0.15)
    miner = batch_mining.select('rho_distance', options('--miner_rho_distance_cp', str(cp)))
    frequency, sizes = empirical(miner, batch, labels)
    assert set(sizes) == {7}
    assert_matches(frequency, probability, N_DRAWS)


def test_rho_distance_miner_counts_push_triplets():
    batch, labels = distance_geometry()
    miner = batch_mining.select('rho_distance', options('--miner_rho_distance_cp', '0.5'))
    torch.manual_seed(1)
    seen = set()
    for _ in range(50):
        triplets = miner(batch, labels)
        pushes = int((triplets[:, 0] == triplets[:, 1]).sum())
        assert miner.push_triplets == pushes
        seen.add(pushes)
    assert len(seen) > 2


def test_random_distance_miner_averages_over_label_permutations():
    batch, labels = random_unit_batch(6, 8, seed=6), np.array([0, 0, 0, 1, 1, 2])
    bs, dim = 6, 8
    distances = np.maximum(np_distances(batch), 0.5)
    probability = np.zeros((bs, bs, bs))
    permutations = list(itertools.permutations(range(bs)))
    for permutation in permutations:
        shuffled = labels[list(permutation)]
        for a, positives in enumerate(positive_sets(shuffled)):
            if positives:
                negatives = isd_probabilities(distances[a], dim, shuffled != shuffled[a])
                for p in positives:
                    probability[a, p] += negatives / len(positives) / len(permutations)
    assert np.allclose(probability.sum(axis=(1, 2)), 5 / 6)
    miner = batch_mining.select('random_distance', options())
    frequency, sizes = empirical(miner, batch, labels)
    assert set(sizes) == {5}
    assert_matches(frequency, probability, N_DRAWS)


# -- parametric -------------------------------------------------------------------------------

def parametric_geometry():
    """D = 3: class 0 near the north pole, classes 1-3 spread around the south pole, so class 0's
    negatives all lie beyond 1.6 and the south anchors see negatives inside and outside [0.3, 1.6]."""
    polar = np.radians([4, 5, 150, 170, 135, 160, 175, 140])
    azimuth = np.radians([0, 200, 10, 100, 170, 250, 320, 60])
    rows = np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], 1)
    return unit_rows(rows), np.array([0, 0, 1, 1, 2, 2, 3, 3])


def expected_parametric(batch, labels, mode, n_support, lo, hi):
    support = np.linspace(lo, hi, n_support)
    in_band = {'uniform': lambda s: True, 'hards': lambda s: s <= 0.5,
               'veryhards': lambda s: s <= 0.3, 'semihards': lambda s: 0.3 <= s <= 0.7}[mode]
    d = np_distances(batch, floor=1e-4)
    bs = len(labels)
    probability = np.zeros((bs, bs, bs))
    for a, positives in enumerate(positive_sets(labels)):
        weights = np.zeros(bs)
        for n in range(bs):
            if labels[n] != labels[a] and lo <= d[a, n] <= hi:
                b = sum(1 for s in support[1:-1] if s < d[a, n])
                weights[n] = 1.0 if in_band(support[b]) else 1e-15
        if positives and weights.sum() > 0:
            for p in positives:
                probability[a, p] = weights / weights.sum() / len(positives)
    return probability


def test_parametric_miner_histogram_weights_support_mask_and_skipped_anchors():
    batch, labels = parametric_geometry()
    d = np_distances(batch)
    assert d[0, 2:].min() > 1.6 and d[1, 2:].min() > 1.6
    for mode in ('semihards', 'uniform'):
        probability = expected_parametric(batch, labels, mode, 6, 0.3, 1.6)
        assert probability[:2].sum() == 0 and np.allclose(probability[2:].sum(axis=(1, 2)), 1)
        masked = [(a, n) for a in range(2, 8) for n in range(8)
                  if labels[n] != labels[a] and not 0.3 <= d[a, n] <= 1.6]
        assert masked
        assert_far_from_uniform_negatives(probability, labels, gap=0.15)
        miner = batch_mining.select('parametric', options(
            '--miner_parametric_mode', mode, '--miner_parametric_n_support', '6',
            '--miner_parametric_support_lim', '0.3', '1.6'))
        frequency, sizes = empirical(miner, batch, labels)
        assert set(sizes) == {6}
        assert_matches(frequency, probability, N_DRAWS)


def test_parametric_miner_clipped_bins_keep_a_tiny_weight():
    """hards on [0.1, 1.4]: anchors whose in-support negatives all sit in zero bins (clipped to
    1e-15) draw uniformly among them instead of being skipped."""
    batch, labels = parametric_geometry()
    probability = expected_parametric(batch, labels, 'hards', 30, 0.1, 1.4)
    kept = probability.sum(axis=(1, 2)) > 0
    assert kept.sum() >= 2
    miner = batch_mining.select('parametric', options('--miner_parametric_mode', 'hards'))
    frequency, _ = empirical(miner, batch, labels)
    assert_matches(frequency, probability, N_DRAWS)


# -- random and intra_random ------------------------------------------------------------------

def valid_triplets(labels):
    bs = len(labels)
    return [(a, p, n) for a in range(bs) for p in range(bs) for n in range(bs)
            if labels[a] == labels[p] and a != p and labels[n] != labels[a]]


def test_random_miner_draws_a_uniform_subset_in_uniform_order():
    labels = np.array([0, 0, 1, 1])
    valid = valid_triplets(labels)
    assert len(valid) == sum(c * (c - 1) * (4 - c) for c in (2, 2)) == 8
    miner = batch_mining.select('random', options())
    batch = random_unit_batch(4, 8, seed=0)
    torch.manual_seed(0)
    subsets = {frozenset(s): i for i, s in enumerate(itertools.combinations(valid, 4))}
    subset_counts, position_counts = np.zeros(len(subsets)), np.zeros((4, len(valid)))
    for _ in range(N_DRAWS):
        drawn = [tuple(t) for t in miner(batch, labels).tolist()]
        subset_counts[subsets[frozenset(drawn)]] += 1
        for position, triplet in enumerate(drawn):
            position_counts[position, valid.index(triplet)] += 1
    assert_matches(subset_counts / N_DRAWS, np.full(len(subsets), 1 / 70), N_DRAWS)
    assert_matches(position_counts / N_DRAWS, np.full((4, 8), 1 / 8), N_DRAWS)


def test_random_miner_returns_every_valid_triplet_when_exactly_batch_size_exist():
    labels = np.array([0, 0, 1, 2])
    miner = batch_mining.select('random', options())
    torch.manual_seed(0)
    firsts = set()
    for _ in range(40):
        drawn = [tuple(t) for t in miner(random_unit_batch(4, 8, seed=0), labels).tolist()]
        assert sorted(drawn) == sorted(valid_triplets(labels))
        firsts.add(drawn[0])
    assert len(firsts) == 4


def test_intra_random_miner_class_uniform_then_members_uniform():
    labels = np.array([0, 0, 0, 1, 2])
    bs = 5
    probability = np.zeros((bs, bs, bs))
    for c in (0, 1, 2):
        members = np.flatnonzero(labels == c)
        probability[np.ix_(members, members, members)] = 1 / 3 / len(members) ** 3
    miner = batch_mining.select('intra_random', options())
    counts, sizes = empirical(miner, random_unit_batch(bs, 4, seed=0), labels)
    assert set(sizes) == {bs}
    assert_matches(counts / bs, probability, N_DRAWS * bs)


# -- npair ------------------------------------------------------------------------------------

def test_npair_miner_positive_uniform_over_other_same_label_positions():
    labels = np.array([0, 0, 0, 1, 1, 2, 3])
    miner = batch_mining.select('npair', options())
    batch = random_unit_batch(7, 4, seed=0)
    torch.manual_seed(0)
    counts = np.zeros((7, 7))
    for _ in range(N_DRAWS):
        anchors, positives, _ = miner(batch, labels)
        assert anchors == [0, 1, 2, 3, 4]
        counts[anchors, positives] += 1
    probability = np.zeros((7, 7))
    for a, positives in enumerate(positive_sets(labels)):
        probability[a, positives] = 1.0 / len(positives) if positives and a < 5 else 0
    assert_matches(counts / N_DRAWS, probability, N_DRAWS)
