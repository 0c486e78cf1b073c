"""The miners' contract: registry and errors, names, output structure, kept anchors, validity of
every triplet, the set forms of npair and lifted, the inverse-sphere weights against a direct numpy
evaluation, the failure modes, and the start-up notices for miner flags that do nothing."""
import argparse

import numpy as np
import pytest
import torch

import batch_mining
import parameters
from batch_mining.common import (MiningError, draw_categorical, inverse_sphere_log_weights,
                                 inverse_sphere_weights)

TRIPLET_MINERS = ('random', 'semihard', 'softhard', 'distance', 'rho_distance', 'parametric',
                  'random_distance', 'intra_random')
NAMES = {'random': 'random', 'semihard': 'semihard', 'softhard': 'softhard', 'distance': 'distance',
         'rho_distance': 'rho_distance', 'npair': 'npair', 'parametric': 'parametric', 'lifted': 'lifted',
         'random_distance': 'distance', 'intra_random': 'random'}


pytestmark = pytest.mark.usefixtures('single_thread')


def options(*argv):
    return parameters.read_arguments(['--loss', 'triplet'] + list(argv))


def unit_batch(n, dim, seed=0):
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(x, dim=1)


def spc_labels(n_classes, per_class):
    return torch.arange(n_classes).repeat_interleave(per_class)


# -- registry ----------------------------------------------------------------------------------

def test_registry_keys_and_name_attributes():
    assert sorted(batch_mining.BATCHMINING_METHODS) == sorted(NAMES)
    for key, name in NAMES.items():
        assert batch_mining.select(key, options()).name == name


def test_key_attribute_is_the_registry_key():
    for key in NAMES:
        assert batch_mining.select(key, options()).key == key
        assert batch_mining.BATCHMINING_METHODS[key].BatchMiner.key == key


def test_select_unknown_name_message():
    with pytest.raises(NotImplementedError, match='^Batchmining foo not available!$'):
        batch_mining.select('foo', options())


def test_semihard_reads_margin_of_base_loss():
    assert batch_mining.select('semihard', options('--loss_triplet_margin', '0.35')).margin == 0.35
    opt = parameters.read_arguments(['--loss', 'triplet_lsd', '--loss_triplet_margin', '0.4'])
    assert batch_mining.select('semihard', opt).margin == 0.4
    opt = parameters.read_arguments(['--loss', 'multisimilarity'])
    assert batch_mining.select('semihard', opt).margin == 0.1
    opt.loss_snr_margin = 0.7
    assert batch_mining.select('semihard', opt, loss='snr_lsd').margin == 0.7
    assert batch_mining.check_semihard('snr', opt) == 0.7


def test_semihard_ignores_an_attribute_left_on_the_options():
    """The margin follows the loss it is given, not a `loss_source` another component wrote onto `opt`."""
    opt = parameters.read_arguments(['--loss', 'triplet_lsd', '--loss_triplet_margin', '0.3'])
    opt.loss_source = 'multisimilarity'
    assert batch_mining.select('semihard', opt).margin == 0.3
    assert batch_mining.select('semihard', opt, loss='multisimilarity').margin == 0.1


@pytest.mark.parametrize('loss', ['contrastive', 'npair_lsd'])
def test_semihard_without_margin_flag_names_the_flag(loss):
    base = loss[:-len('_lsd')] if loss.endswith('_lsd') else loss
    with pytest.raises(MiningError, match='--loss_{}_margin'.format(base)) as error:
        batch_mining.select('semihard', parameters.read_arguments(['--loss', loss]))
    assert '\n' not in str(error.value)
    with pytest.raises(MiningError, match='--loss_{}_margin.*--loss {};'.format(base, loss)) as error:
        batch_mining.check_semihard(loss, parameters.read_arguments(['--loss', 'triplet']))
    assert '\n' not in str(error.value)


@pytest.mark.parametrize('key,flag', [('distance', 'miner_distance_lower_cutoff'),
                                      ('rho_distance', 'miner_rho_distance_lower_cutoff'),
                                      ('random_distance', 'miner_distance_lower_cutoff'),
                                      ('parametric', 'miner_parametric_mode'),
                                      ('semihard', 'loss')])
def test_missing_option_names_the_flag(key, flag):
    with pytest.raises(MiningError, match='--{}'.format(flag)):
        batch_mining.select(key, argparse.Namespace())


@pytest.mark.parametrize('argv,flag', [
    (['--miner_parametric_mode', 'hardest'], '--miner_parametric_mode'),
    (['--miner_parametric_n_support', '1'], '--miner_parametric_n_support'),
    (['--miner_parametric_support_lim', '1.4', '0.1'], '--miner_parametric_support_lim')])
def test_parametric_bad_flags(argv, flag):
    with pytest.raises(MiningError, match=flag):
        batch_mining.select('parametric', options(*argv))


def test_parametric_bin_weights_per_mode():
    """Support 0, .2, .4, .6, .8, 1 (K = 6): bin b weighs f(s_b), out-of-band bins clipped to 1e-15."""
    expected = {'uniform': [1, 1, 1, 1, 1], 'hards': [1, 1, 1, 1e-15, 1e-15],
                'veryhards': [1, 1, 1e-15, 1e-15, 1e-15], 'semihards': [1e-15, 1e-15, 1, 1, 1e-15]}
    for mode, weights in expected.items():
        miner = batch_mining.select('parametric', options(
            '--miner_parametric_mode', mode, '--miner_parametric_n_support', '6',
            '--miner_parametric_support_lim', '0', '1'))
        assert np.allclose(miner.support, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        assert np.allclose(miner.distr, np.array(weights) / np.sum(weights), rtol=1e-12, atol=0)


def test_parametric_defaults():
    miner = batch_mining.select('parametric', options())
    assert miner.mode == 'uniform' and len(miner.support) == 30
    assert miner.support[0] == pytest.approx(0.1) and miner.support[-1] == pytest.approx(1.4)


# -- output structure and validity -------------------------------------------------------------

VALIDITY_LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 5, 6])
WITH_POSITIVE = [0, 1, 2, 3, 4, 5, 6, 8, 9]


def mined(key, draws=20):
    """`draws` outputs of miner `key` on a 12-sample batch with singletons 7, 10, 11."""
    miner = batch_mining.select(key, options('--miner_parametric_support_lim', '0', '2'))
    batch = unit_batch(12, 16).requires_grad_()
    torch.manual_seed(0)
    outputs = [miner(batch, VALIDITY_LABELS) for _ in range(draws)]
    for triplets in outputs:
        assert isinstance(triplets, torch.Tensor) and triplets.dtype == torch.int64
        assert triplets.ndim == 2 and triplets.shape[1] == 3 and not triplets.requires_grad
        assert triplets.min() >= 0 and triplets.max() < 12
    return outputs


def is_valid(a, p, n):
    y = VALIDITY_LABELS
    return (y[a] == y[p]) & (a != p) & (y[n] != y[a])


@pytest.mark.parametrize('key,anchors', [('semihard', WITH_POSITIVE), ('softhard', WITH_POSITIVE),
                                         ('parametric', WITH_POSITIVE), ('distance', list(range(12)))])
def test_per_anchor_miners_give_valid_triplets_for_the_specified_anchors(key, anchors):
    for triplets in mined(key):
        a, p, n = triplets.T
        assert a.tolist() == anchors
        singleton = ~torch.isin(a, torch.tensor(WITH_POSITIVE))
        assert torch.all(is_valid(a, p, n) | (singleton & (p == a) & (VALIDITY_LABELS[n] != VALIDITY_LABELS[a])))


def test_rho_distance_triplets_are_regular_or_push():
    pushes = 0
    for triplets in mined('rho_distance'):
        a, p, n = triplets.T
        assert a.tolist() == WITH_POSITIVE
        push = (p == a) & (n != a) & (VALIDITY_LABELS[n] == VALIDITY_LABELS[a])
        assert torch.all(is_valid(a, p, n) | push)
        pushes += int(push.sum())
    assert 0 < pushes < 20 * 9


def test_random_miner_gives_batch_size_distinct_valid_triplets():
    for triplets in mined('random'):
        assert len(triplets) == 12 and len({tuple(t) for t in triplets.tolist()}) == 12
        assert torch.all(is_valid(*triplets.T))


def test_intra_random_gives_batch_size_same_class_triplets():
    coincide = 0
    for triplets in mined('intra_random'):
        a, p, n = triplets.T
        assert len(triplets) == 12
        assert torch.all(VALIDITY_LABELS[a] == VALIDITY_LABELS[p])
        assert torch.all(VALIDITY_LABELS[a] == VALIDITY_LABELS[n])
        coincide += int(((a == p) & (p == n)).sum())
    assert coincide > 0


def test_random_distance_keeps_label_multiset_and_anchor_count():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    miner = batch_mining.select('random_distance', options())
    torch.manual_seed(0)
    anchor_sets = set()
    for _ in range(30):
        triplets = miner(unit_batch(8, 16), labels)
        assert len(triplets) == 7 and torch.all(triplets[1:, 0] > triplets[:-1, 0])
        anchor_sets.add(tuple(triplets[:, 0].tolist()))
    assert len(anchor_sets) > 1


@pytest.mark.parametrize('key', ['semihard', 'softhard', 'rho_distance', 'parametric', 'random_distance'])
def test_no_anchor_with_a_positive_gives_an_empty_triplet_tensor(key):
    triplets = batch_mining.select(key, options())(unit_batch(5, 8), torch.arange(5))
    assert triplets.shape == (0, 3) and triplets.dtype == torch.int64


@pytest.mark.parametrize('key', ['semihard', 'softhard'])
def test_one_class_batch_gives_no_triplets_for_semihard_and_softhard(key):
    assert batch_mining.select(key, options())(unit_batch(4, 8), torch.zeros(4, dtype=torch.int64)).shape == (0, 3)


@pytest.mark.parametrize('key', TRIPLET_MINERS)
def test_label_containers_give_identical_draws(key):
    batch = unit_batch(8, 8)
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    miner = batch_mining.select(key, options())
    draws = []
    for container in (torch.tensor(labels), torch.tensor(labels, dtype=torch.int32), np.array(labels), labels):
        torch.manual_seed(3)
        draws.append(miner(batch, container))
    assert all(torch.equal(draws[0], other) for other in draws[1:])


def test_label_count_mismatch_is_an_error():
    with pytest.raises(MiningError, match='7 labels for a batch of 8'):
        batch_mining.select('distance', options())(unit_batch(8, 8), torch.zeros(7))


def test_return_distances_forms():
    batch, labels = unit_batch(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
    x = batch.double().numpy()
    plain = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    for key in ('semihard', 'softhard'):
        triplets, distances = batch_mining.select(key, options())(batch, labels, return_distances=True)
        assert isinstance(distances, np.ndarray) and np.allclose(distances, plain, atol=1e-3)
    triplets, distances = batch_mining.select('distance', options())(batch, labels, return_distances=True)
    assert isinstance(distances, torch.Tensor)
    assert np.allclose(distances.numpy(), np.maximum(plain, 0.5), atol=1e-5)
    triplets, distances = batch_mining.select('rho_distance', options())(batch, labels, return_distances=True)
    assert np.allclose(distances.numpy(), np.maximum(np.sqrt(np.maximum(plain ** 2, 1e-4)), 0.5), atol=1e-5)


# -- npair and lifted set forms ----------------------------------------------------------------

def test_lifted_set_form_is_exact():
    labels = np.array([2, 0, 2, 1, 0, 2, 3])
    anchors, positives, negatives = batch_mining.select('lifted', options())(unit_batch(7, 4), labels)
    assert anchors == [0, 1, 2, 4, 5] and all(type(a) is int for a in anchors)
    expected_positives = [[2, 5], [4], [0, 5], [1], [0, 2]]
    for a, pos, neg, exp in zip(anchors, positives, negatives, expected_positives):
        assert isinstance(pos, np.ndarray) and pos.dtype == np.int64 and pos.tolist() == exp
        assert isinstance(neg, np.ndarray) and neg.tolist() == [j for j in range(7) if labels[j] != labels[a]]


def test_npair_set_form():
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 3])
    anchors, positives, negatives = batch_mining.select('npair', options())(unit_batch(7, 4), labels)
    assert isinstance(anchors, list) and isinstance(positives, list) and isinstance(negatives, list)
    assert anchors == [0, 1, 2, 4, 5] and all(type(p) is int for p in positives)
    for a, p, neg in zip(anchors, positives, negatives):
        assert p != a and labels[p] == labels[a]
        assert isinstance(neg, np.ndarray) and neg.tolist() == [j for j in range(7) if labels[j] != labels[a]]


def test_npair_with_two_per_class_pairs_both_directions():
    anchors, positives, _ = batch_mining.select('npair', options())(unit_batch(6, 4), spc_labels(3, 2))
    assert anchors == list(range(6)) and positives == [1, 0, 3, 2, 5, 4]


@pytest.mark.parametrize('key', ['npair', 'lifted'])
def test_set_forms_edge_cases(key):
    miner = batch_mining.select(key, options())
    assert miner(unit_batch(3, 4), torch.arange(3)) == ([], [], [])
    anchors, _, negatives = miner(unit_batch(3, 4), torch.zeros(3, dtype=torch.int64))
    assert anchors == [0, 1, 2] and all(len(n) == 0 for n in negatives)


# -- the batched categorical draw -------------------------------------------------------------

def test_draw_categorical_row_distributions():
    weights = torch.tensor([[0.0, 1.0, 0.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0, 1e-15]])
    torch.manual_seed(0)
    n = 20000
    drawn = torch.stack([draw_categorical(weights) for _ in range(n)])
    frequency = np.stack([np.bincount(drawn[:, r].numpy(), minlength=5) / n for r in range(3)])
    probability = (weights / weights.sum(dim=1, keepdim=True)).double().numpy()
    assert np.all(frequency[probability == 0] == 0)
    assert np.all(np.abs(frequency - probability) <= 5 * np.sqrt(probability * (1 - probability) / n))


def test_draw_categorical_never_returns_a_zero_weight_column_when_u_rounds_up(monkeypatch):
    """u = total (rounding of rand·total) would fall past the last column: the last positive wins."""
    monkeypatch.setattr(torch, 'rand', lambda *shape, **kwargs: torch.ones(*shape, dtype=kwargs['dtype']))
    weights = torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 5.0]])
    assert draw_categorical(weights).tolist() == [2, 4]


# -- inverse-sphere weights ---------------------------------------------------------------------

def test_inverse_sphere_log_weights_match_hand_values_for_d128():
    d = torch.tensor([0.5, 1.0, 1.2, 1.4, 1.6, 1.9], dtype=torch.float64)
    expected = [91.4, 18.0, 4.9, -0.31, 4.6, 64.6]
    assert np.allclose(inverse_sphere_log_weights(d, 128).numpy(), expected, atol=0.05)


@pytest.mark.parametrize('dim', [4, 8, 32])
def test_inverse_sphere_weights_against_direct_numpy(dim):
    """Rows of clamped distances incl. values above the 1.4 upper cutoff, which keep their weight."""
    rng = np.random.default_rng(dim)
    distances = np.maximum(rng.uniform(0.05, 1.95, size=(6, 9)), 0.5)
    labels = np.array([0, 0, 1, 1, 2, 2])
    column_labels = np.array([0, 1, 2, 0, 1, 2, 3, 3, 4])
    same = labels[:, None] == column_labels[None, :]
    direct = np.where(same, 0.0, distances ** (2.0 - dim) * (1 - distances ** 2 / 4) ** (-(dim - 3) / 2))
    direct /= direct.sum(axis=1, keepdims=True)
    weights = inverse_sphere_weights(torch.tensor(distances, dtype=torch.float32), dim, torch.tensor(same))
    weights = (weights / weights.sum(dim=1, keepdim=True)).double().numpy()
    assert np.allclose(weights, direct, rtol=1e-4, atol=1e-7)
    assert (direct[(distances > 1.4) & ~same] > 0).all() and ((distances > 1.4) & ~same).any()


def test_inverse_sphere_weights_underflow_to_exact_zero_in_float32():
    """D = 512, a negative at the 0.5 cutoff (ℓ ≈ 370): a negative near 1.41 weighs exactly 0."""
    distances = torch.tensor([[0.5, 0.5, 1.41]])
    same = torch.tensor([[True, False, False]])
    weights = inverse_sphere_weights(distances, 512, same)
    assert weights[0, 0] == 0 and weights[0, 1] == 1 and weights[0, 2] == 0
    assert inverse_sphere_weights(distances.double(), 512, same)[0, 2] > 0


@pytest.mark.parametrize('key', ['distance', 'rho_distance', 'random_distance'])
def test_isd_miners_fail_on_one_class_batch(key):
    miner = batch_mining.select(key, options('--miner_rho_distance_cp', '0'))
    with pytest.raises(MiningError, match='no negative'):
        miner(unit_batch(4, 8), torch.zeros(4, dtype=torch.int64))


@pytest.mark.parametrize('key', ['distance', 'rho_distance', 'random_distance'])
def test_isd_miners_fail_on_distances_of_two_or_more(key):
    batch = unit_batch(4, 8)
    batch[1] = -batch[0]
    batch = 3 * batch
    miner = batch_mining.select(key, options('--miner_rho_distance_cp', '0'))
    torch.manual_seed(0)
    with pytest.raises(MiningError, match='distance >= 2'):
        for _ in range(20):
            miner(batch, torch.tensor([0, 1, 0, 1]))


def test_distance_miner_fails_on_zero_distance_negative_without_cutoff():
    batch = unit_batch(4, 8)
    batch[1] = batch[0]
    miner = batch_mining.select('distance', options('--miner_distance_lower_cutoff', '0'))
    with pytest.raises(MiningError, match='non-finite'):
        miner(batch, torch.tensor([0, 1, 0, 1]))


def test_random_miner_needs_batch_size_valid_triplets():
    miner = batch_mining.select('random', options())
    with pytest.raises(MiningError, match='at least 3 valid triplets.*only 2'):
        miner(unit_batch(3, 4), torch.tensor([0, 0, 1]))
    with pytest.raises(MiningError, match='only 0'):
        miner(unit_batch(4, 4), torch.zeros(4, dtype=torch.int64))


# -- device ------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('key', sorted(NAMES))
def test_miners_run_on_gpu_with_gpu_labels(key):
    batch = unit_batch(16, 32).cuda().requires_grad_()
    miner = batch_mining.select(key, options())
    for labels in (spc_labels(8, 2).cuda(), spc_labels(8, 2)):
        out = miner(batch, labels)
        if key in ('npair', 'lifted'):
            assert len(out[0]) == 16
        else:
            assert out.device.type == 'cuda' and out.dtype == torch.int64 and out.shape[1] == 3


# -- start-up notices for miner flags that do nothing ------------------------------------------

def notices(*argv):
    return batch_mining.ignored_flag_notices(parameters.read_arguments(list(argv)))


def test_no_notice_at_defaults_or_for_flags_the_miner_reads():
    assert notices() == []
    for miner in batch_mining.BATCHMINING_METHODS:
        assert notices('--batch_mining', miner) == []
    assert notices('--miner_distance_lower_cutoff', '0.3') == []
    assert notices('--batch_mining', 'random_distance', '--miner_distance_lower_cutoff', '0.3') == []
    assert notices('--batch_mining', 'rho_distance', '--miner_rho_distance_cp', '0.4',
                   '--miner_rho_distance_lower_cutoff', '0.6') == []
    assert notices('--batch_mining', 'parametric', '--miner_parametric_mode', 'hards') == []
    assert notices('--miner_distance_upper_cutoff', '1.4') == []  # given, but the default value


@pytest.mark.parametrize('miner', ['distance', 'random_distance', 'rho_distance', 'semihard'])
def test_upper_cutoffs_are_accepted_and_ignored_by_every_miner(miner):
    assert notices('--batch_mining', miner, '--miner_distance_upper_cutoff', '1.2',
                   '--miner_rho_distance_upper_cutoff', '1.1') == [
        'Notice: --miner_distance_upper_cutoff is accepted for compatibility and ignored by --batch_mining {}.'.format(
            miner),
        'Notice: --miner_rho_distance_upper_cutoff is accepted for compatibility and ignored by --batch_mining '
        '{}.'.format(miner)]


def test_upper_cutoff_really_changes_nothing():
    """The notice tells the truth: the distance miner's draws are the same for any upper cutoff."""
    batch, labels = unit_batch(12, 16, seed=3), spc_labels(6, 2)
    draws = []
    for cutoff in ('1.4', '0.6'):
        torch.manual_seed(0)
        miner = batch_mining.select('distance', options('--miner_distance_upper_cutoff', cutoff))
        draws.append(torch.cat([miner(batch, labels) for _ in range(5)]))
    assert torch.equal(draws[0], draws[1])


def test_flags_of_another_miner_get_a_notice_naming_their_readers():
    assert notices('--batch_mining', 'semihard', '--miner_distance_lower_cutoff', '0.3',
                   '--miner_rho_distance_cp', '0.5') == [
        'Notice: --miner_distance_lower_cutoff is ignored by --batch_mining semihard (only distance, '
        'random_distance read it).',
        'Notice: --miner_rho_distance_cp is ignored by --batch_mining semihard (only rho_distance read it).']
    assert notices('--batch_mining', 'distance', '--miner_parametric_support_lim', '0.2', '1.2') == [
        'Notice: --miner_parametric_support_lim is ignored by --batch_mining distance (only parametric read it).']
