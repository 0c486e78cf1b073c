"""Every miner with reference rows (a cross-batch memory), against probabilities computed here, slowly and
independently, from each miner's stated rule applied to the joined set batch ∪ memory: anchors are batch rows,
positives and negatives are drawn from the joined rows, a row is never its own candidate. The triplet losses
take the memory through that interface alone, whatever the miner.

Frequencies are compared per (anchor, positive, negative) cell with a 5-sigma bound, as in
tests/test_batch_mining_distributions.py (N calls under a fixed seed; a cell with probability 0 never occurs).
"""
import itertools

import numpy as np
import pytest
import torch

import batch_mining
import criteria
import parameters
from criteria_fixtures import make_opt

N_DRAWS = 1000
DIM = 4
BATCH_LABELS = np.array([0, 0, 1, 1, 2, 2])
MEMORY_LABELS = np.array([0, 1, 2, 3, 3, 1])   # class 3 only in the memory: negatives, never anchors
JOINED = np.concatenate([BATCH_LABELS, MEMORY_LABELS])
B, N = len(BATCH_LABELS), len(JOINED)


pytestmark = pytest.mark.usefixtures('single_thread')


def rows(n, seed):
    return torch.nn.functional.normalize(torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed)), dim=1)


BATCH, MEMORY = rows(B, 0), rows(N - B, 1)


def joined_distances(floor=0.0):
    """Euclidean distances from coordinate differences in float64 over batch ∪ memory, anchors × joined."""
    x = torch.cat([BATCH, MEMORY]).double().numpy()
    return np.sqrt(np.maximum(((x[:B, None, :] - x[None, :, :]) ** 2).sum(-1), floor))


def positives(a):
    return [j for j in range(N) if JOINED[j] == JOINED[a] and j != a]


def negatives(a):
    return [j for j in range(N) if JOINED[j] != JOINED[a]]


def isd(d_row, candidates):
    """The inverse-sphere weights written out over `candidates`: d^(2−D)·(1 − d²/4)^(−(D−3)/2), normalised."""
    weights = np.zeros(N)
    for j in candidates:
        weights[j] = d_row[j] ** (2.0 - DIM) * (1 - d_row[j] ** 2 / 4) ** (-(DIM - 3) / 2)
    return weights / weights.sum()


def miner_of(key, *argv):
    return batch_mining.select(key, parameters.read_arguments(['--loss', 'triplet', *argv]))


def draws(miner, n_draws=N_DRAWS, seed=0):
    torch.manual_seed(seed)
    return [miner(BATCH, torch.as_tensor(BATCH_LABELS), MEMORY, torch.as_tensor(MEMORY_LABELS))
            for _ in range(n_draws)]


def frequencies(calls):
    """Mean count per call of every (a, p, n) cell of the anchors × joined × joined grid."""
    triplets = torch.cat(calls).numpy()
    assert triplets[:, 0].max() < B and triplets[:, 1:].max() < N
    cells = np.ravel_multi_index((triplets[:, 0], triplets[:, 1], triplets[:, 2]), (B, N, N))
    return np.bincount(cells, minlength=B * N * N).reshape(B, N, N) / len(calls)


def assert_matches(frequency, probability, n_draws=N_DRAWS):
    assert np.all(frequency[probability == 0] == 0), 'a cell with probability 0 was drawn'
    bound = 5 * np.sqrt(probability * (1 - np.minimum(probability, 1)) / n_draws) + 1e-12
    excess = np.abs(frequency - probability) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, 'cell {}: frequency {:.4f}, specified {:.4f}'.format(
        worst, frequency[worst], probability[worst])
    assert (probability[:, :, B:].sum() + probability[:, B:, :].sum()) > 0.3   # the memory takes part


# ----- the distance family: the unmemoried formula on the joint set -----------------------------------------

def test_distance_miner_draws_as_the_formula_on_the_joint_set():
    distances = np.maximum(joined_distances(), 0.5)            # --miner_distance_lower_cutoff 0.5
    probability = np.zeros((B, N, N))
    for a in range(B):
        negative = isd(distances[a], negatives(a))
        for p in positives(a):
            probability[a, p] = negative / len(positives(a))
    calls = draws(miner_of('distance'))
    assert all(sorted(t[:, 0].tolist()) == list(range(B)) for t in calls)   # one triplet per batch row
    assert_matches(frequencies(calls), probability)
    assert probability.max() > 2 * probability[probability > 0].min()      # the weights are far from uniform


def test_distance_miner_with_memory_equals_the_unmemoried_miner_on_the_joint_set():
    """Rows 0..B-1 of the unmemoried miner run on batch ∪ memory draw from the same distribution."""
    joint, joint_labels = torch.cat([BATCH, MEMORY]), torch.as_tensor(JOINED)
    miner = miner_of('distance')
    torch.manual_seed(3)
    unmemoried = [t[t[:, 0] < B] for t in (miner(joint, joint_labels) for _ in range(N_DRAWS))]
    memoried = frequencies(draws(miner, seed=4))
    reference = frequencies(unmemoried)
    bound = 5 * np.sqrt(2 * np.maximum(reference, memoried) / N_DRAWS) + 1e-12
    assert np.all(np.abs(memoried - reference) <= bound)
    assert np.array_equal(memoried > 0, reference > 0)


def test_rho_distance_miner_pushes_or_draws_as_the_formula_on_the_joint_set():
    cp = 0.3
    distances = np.maximum(joined_distances(floor=1e-4), 0.5)
    probability = np.zeros((B, N, N))
    for a in range(B):
        negative = isd(distances[a], negatives(a))
        for p in positives(a):
            probability[a, p] += (1 - cp) * negative / len(positives(a))
            probability[a, a, p] += cp / len(positives(a))
    calls = draws(miner_of('rho_distance', '--miner_rho_distance_cp', str(cp)))
    assert_matches(frequencies(calls), probability)


def test_random_distance_miner_anchors_the_batch_against_the_joint_set():
    calls = draws(miner_of('random_distance'), n_draws=300)
    triplets = torch.cat(calls)
    assert triplets[:, 0].max() < B and triplets[:, 1:].max() < N and (triplets[:, 1:] >= B).any()
    assert (triplets[:, 0] != triplets[:, 1]).all() and (triplets[:, 0] != triplets[:, 2]).all()


# ----- the uniform and band miners ----------------------------------------------------------------------------

def test_random_miner_is_uniform_over_the_valid_triplets_of_the_joint_set():
    valid = [(a, p, n) for a in range(B) for p in positives(a) for n in negatives(a)]
    probability = np.zeros((B, N, N))
    for cell in valid:
        probability[cell] = B / len(valid)   # B distinct triplets a call
    calls = draws(miner_of('random'))
    assert all(len(set(map(tuple, t.tolist()))) == B for t in calls)
    assert_matches(frequencies(calls), probability)


def test_semihard_miner_draws_from_the_band_of_the_joint_set():
    margin = 0.2   # --loss_triplet_margin
    distances = joined_distances()
    probability = np.zeros((B, N, N))
    for a in range(B):
        for p in positives(a):
            band = [n for n in negatives(a) if distances[a, p] < distances[a, n] < distances[a, p] + margin]
            pool = band or negatives(a)
            for n in pool:
                probability[a, p, n] = 1 / len(positives(a)) / len(pool)
    assert_matches(frequencies(draws(miner_of('semihard'))), probability)


def test_softhard_miner_draws_from_the_hard_sets_of_the_joint_set():
    distances = joined_distances()
    probability = np.zeros((B, N, N))
    for a in range(B):
        closest_negative = min(distances[a, n] for n in negatives(a))
        farthest_positive = max(distances[a, p] for p in positives(a))
        hard_p = [p for p in positives(a) if distances[a, p] > closest_negative] or positives(a)
        hard_n = [n for n in negatives(a) if distances[a, n] < farthest_positive] or negatives(a)
        for p, n in itertools.product(hard_p, hard_n):
            probability[a, p, n] = 1 / len(hard_p) / len(hard_n)
    assert_matches(frequencies(draws(miner_of('softhard'))), probability)


def test_parametric_miner_weighs_the_joint_sets_negatives_by_their_bin():
    args = ('--miner_parametric_mode', 'hards', '--miner_parametric_n_support', '6',
            '--miner_parametric_support_lim', '0.1', '1.9')
    support = np.linspace(0.1, 1.9, 6)
    distances = joined_distances(floor=1e-4)
    probability = np.zeros((B, N, N))
    for a in range(B):
        weights = np.zeros(N)
        for n in negatives(a):
            if support[0] <= distances[a, n] <= support[-1]:
                lower = support[min(int(np.sum(support[1:-1] < distances[a, n])), len(support) - 2)]
                weights[n] = 1.0 if lower <= 0.5 else 1e-15
        if weights.sum() == 0:
            continue
        for p in positives(a):
            probability[a, p] = weights / weights.sum() / len(positives(a))
    assert_matches(frequencies(draws(miner_of('parametric', *args))), probability)


def test_intra_random_miner_draws_a_batch_anchor_and_joint_set_members_of_a_batch_class():
    classes = np.unique(BATCH_LABELS)
    probability = np.zeros((B, N, N))
    for c in classes:
        in_batch = [a for a in range(B) if BATCH_LABELS[a] == c]
        in_joint = [j for j in range(N) if JOINED[j] == c]
        for a, p, n in itertools.product(in_batch, in_joint, in_joint):
            probability[a, p, n] = B / len(classes) / len(in_batch) / len(in_joint) ** 2
    assert_matches(frequencies(draws(miner_of('intra_random'))), probability)


# ----- the set-form miners: exact sets ----------------------------------------------------------------------

def test_lifted_miner_gives_the_joint_sets():
    anchors, positive_sets, negative_sets = draws(miner_of('lifted'), n_draws=1)[0]
    assert anchors == list(range(B))
    assert [list(s) for s in positive_sets] == [positives(a) for a in range(B)]
    assert [list(s) for s in negative_sets] == [negatives(a) for a in range(B)]


def test_npair_miner_draws_one_joint_positive_and_takes_every_joint_negative():
    calls = draws(miner_of('npair'), n_draws=N_DRAWS)
    assert all(call[0] == list(range(B)) for call in calls)
    assert all([list(s) for s in call[2]] == [negatives(a) for a in range(B)] for call in calls)
    counts = np.zeros((B, N))
    for call in calls:
        counts[np.arange(B), call[1]] += 1
    probability = np.zeros((B, N))
    for a in range(B):
        probability[a, positives(a)] = 1 / len(positives(a))
    frequency = counts / N_DRAWS
    assert np.all(frequency[probability == 0] == 0)
    assert np.all(np.abs(frequency - probability) <= 5 * np.sqrt(probability * (1 - probability) / N_DRAWS))


# ----- the interface --------------------------------------------------------------------------------------

@pytest.mark.parametrize('key', list(batch_mining.BATCHMINING_METHODS))
def test_every_miner_takes_reference_rows_and_refuses_half_of_them(key):
    miner = miner_of(key)
    torch.manual_seed(0)
    miner(BATCH, torch.as_tensor(BATCH_LABELS), MEMORY, torch.as_tensor(MEMORY_LABELS))
    with pytest.raises(batch_mining.MiningError, match='reference'):
        miner(BATCH, torch.as_tensor(BATCH_LABELS), MEMORY)


class PlainMiner:
    """A miner with nothing but the interface: records its arguments, returns fixed joined positions."""

    def __init__(self, output):
        self.output, self.arguments = output, []

    def __call__(self, embeddings, labels, ref_embeddings=None, ref_labels=None):
        self.arguments.append((embeddings, labels, ref_embeddings, ref_labels))
        return torch.as_tensor(self.output)


def test_a_triplet_loss_hands_the_memory_to_any_miner_through_the_interface():
    """No loss reads a miner's type or attributes: the memory reaches the miner as its reference rows and the
    returned positions index batch ∪ memory."""
    miner = PlainMiner([(0, 6, 8), (1, 0, 7)])
    criterion = criteria.triplet.Criterion(make_opt(), batchminer=miner)
    x = BATCH.double().requires_grad_()
    value = criterion(x, torch.as_tensor(BATCH_LABELS), memory=(MEMORY, torch.as_tensor(MEMORY_LABELS)))
    embeddings, labels, ref_embeddings, ref_labels = miner.arguments[-1]
    assert embeddings is x and torch.equal(ref_embeddings, MEMORY) and ref_labels.tolist() == MEMORY_LABELS.tolist()
    joint = torch.cat([x, MEMORY.double()])

    def hinge(a, p, n):
        return torch.relu((joint[a] - joint[p]).pow(2).sum() - (joint[a] - joint[n]).pow(2).sum() + 0.2)
    torch.testing.assert_close(value, (hinge(0, 6, 8) + hinge(1, 0, 7)) / 2)
