"""select's substring precedence, class_random, full_random, and the notices for sampler flags that do nothing."""
import numpy as np
import pytest
import scipy.stats
import torch

import datasampler
import parameters
from datasampler import (class_random_sampler, d2_coreset_sampler, disthist_batchmatch_sampler, fid_batchmatch_sampler,
                         greedy_coreset_sampler, random_sampler)

# Statistical tests run with fixed seeds; a chi-square p-value below this fails (false-alarm rate 1e-4 per test).
P_MIN = 1e-4


def make_opt(**overrides):
    """The trainer's option namespace (the parser defaults) with `overrides` applied."""
    opt = parameters.read_arguments([])
    for key, value in overrides.items():
        assert hasattr(opt, key), key
        setattr(opt, key, value)
    return opt


def make_index(sizes):
    """image_dict (class → [[path, global index], ...]) and image_list ([(path, class)]), as datasets build them."""
    image_dict, image_list = {}, []
    for key, size in enumerate(sizes):
        image_dict[key] = []
        for _ in range(size):
            path = f'/data/{key:03d}/{len(image_list):05d}.jpg'
            image_dict[key].append([path, len(image_list)])
            image_list.append((path, key))
    return image_dict, image_list


SIZES = [1, 2, 3, 5, 8, 13, 21, 34, 4, 9]  # 100 images; class sizes differ strongly so image-uniform draws would fail


@pytest.fixture
def index():
    return make_index(SIZES)


def epochs(sampler, n):
    return np.array([batch for _ in range(n) for batch in sampler])


@pytest.mark.parametrize('name, module', [
    ('class_random', class_random_sampler), ('full_random', random_sampler), ('greedy_coreset', greedy_coreset_sampler),
    ('d2_coreset', d2_coreset_sampler), ('disthist_batchmatch', disthist_batchmatch_sampler),
    ('fid_batchmatch', fid_batchmatch_sampler),
    ('my_class_random_v2', class_random_sampler), ('random_full', random_sampler),
    ('class_random_coreset', class_random_sampler),  # 'random' is tested before 'coreset'
    ('greedy_d2_coreset', greedy_coreset_sampler),  # 'greedy' is tested before 'd2'
])
def test_select_substring_precedence(index, name, module):
    sampler = datasampler.select(name, make_opt(bs=8, data_batchmatch_bigbs=16), *index, unused_extra=1)
    assert type(sampler) is module.Sampler
    assert sampler.requires_storage is module.REQUIRES_STORAGE


@pytest.mark.parametrize('name', ['random', 'coreset', 'foo_batchmatch', 'full_random_batchmatch', 'fid', 'foo', ''])
def test_select_unknown_names_are_not_available(index, name):
    with pytest.raises(datasampler.SamplerNotAvailableError, match=f'^Minibatch sampler {name} not available!$'):
        datasampler.select(name, make_opt(bs=8), *index)


def test_names_and_storage_flags(index):
    expected = {'class_random': ('class_random_sampler', False), 'full_random': ('random_sampler', False),
                'greedy_coreset': ('greedy_coreset_sampler', True), 'd2_coreset': ('d2_coreset_sampler', True),
                'disthist_batchmatch': ('distmoment_batchmatch_sampler', True),
                'fid_batchmatch': ('spc_fid_batchmatch_sampler', True)}
    for key, (name, storage) in expected.items():
        sampler = datasampler.select(key, make_opt(bs=8, data_storage_no_update=True, data_batchmatch_bigbs=16), *index)
        assert (sampler.name, sampler.requires_storage) == (name, storage)
        assert getattr(sampler, 'update_storage', False) is False


@pytest.mark.parametrize('name', ['class_random', 'full_random', 'greedy_coreset', 'fid_batchmatch'])
def test_samples_per_class_must_divide_bs(index, name):
    with pytest.raises(datasampler.SamplerConfigError, match='#Samples per class must divide batchsize!.*--bs 10'):
        datasampler.select(name, make_opt(bs=10, samples_per_class=3), *index)


def test_batch_larger_than_dataset_is_rejected(index):
    with pytest.raises(datasampler.SamplerConfigError, match='--bs 112 exceeds the 100 training images'):
        datasampler.select('class_random', make_opt(), *index)


@pytest.mark.parametrize('name', ['class_random', 'full_random'])
@pytest.mark.parametrize('bs', [8, 12, 33])
def test_length_and_batch_size(index, name, bs):
    spc = 3 if bs % 3 == 0 else 1
    sampler = datasampler.select(name, make_opt(bs=bs, samples_per_class=spc), *index)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 100 // bs
    assert all(len(batch) == bs and all(type(i) is int and 0 <= i < 100 for i in batch) for batch in batches)


def test_image_list_defaults_to_the_one_image_dict_describes(index):
    image_dict, image_list = index
    torch.manual_seed(0)
    with_list = epochs(datasampler.select('full_random', make_opt(bs=8), image_dict, image_list), 3)
    torch.manual_seed(0)
    without_list = epochs(datasampler.select('full_random', make_opt(bs=8), image_dict), 3)
    np.testing.assert_array_equal(with_list, without_list)


def test_same_seed_same_batches(index):
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(epochs(datasampler.select('class_random', make_opt(bs=8, samples_per_class=4), *index), 2))
    np.testing.assert_array_equal(*runs)


def test_class_random_groups_of_same_class(index):
    image_dict, image_list = index
    labels = np.array([label for _, label in image_list])
    batches = epochs(datasampler.select('class_random', make_opt(bs=12, samples_per_class=4), *index), 5)
    groups = labels[batches].reshape(len(batches), 3, 4)
    assert (groups == groups[..., :1]).all()


def test_class_random_classes_uniform_regardless_of_size(index):
    """Class frequency per group: uniform over the 10 classes (chi-square), although sizes range from 1 to 34."""
    _, image_list = index
    labels = np.array([label for _, label in image_list])
    torch.manual_seed(0)
    batches = epochs(datasampler.select('class_random', make_opt(bs=10, samples_per_class=2), *index), 200)
    group_classes = labels[batches[:, ::2]].ravel()  # 200 epochs × 10 batches × 5 groups = 10 000 draws
    counts = np.bincount(group_classes, minlength=10)
    assert scipy.stats.chisquare(counts).pvalue > P_MIN
    image_weighted = np.array(SIZES) / 100 * counts.sum()
    assert scipy.stats.chisquare(counts, image_weighted).pvalue < P_MIN


def test_class_random_images_uniform_with_replacement(index):
    """Within a group each image is uniform in its class and independent: P(both equal) = 1/size (class of 5 → 0.2)."""
    image_dict, _ = index
    torch.manual_seed(1)
    batches = epochs(datasampler.select('class_random', make_opt(bs=10, samples_per_class=2), *index), 400)
    pairs = batches.reshape(-1, 2)
    members = [g for _, g in image_dict[3]]
    of_class = pairs[np.isin(pairs[:, 0], members)]
    counts = np.bincount(of_class.ravel() - members[0], minlength=5)
    assert scipy.stats.chisquare(counts).pvalue > P_MIN
    same = (of_class[:, 0] == of_class[:, 1]).sum()
    assert scipy.stats.binomtest(same, len(of_class), 0.2).pvalue > P_MIN


def test_class_random_skips_classes_emptied_by_label_noise():
    """Project decision (label noise can empty a class): only non-empty classes are drawn; batches keep bs indices."""
    image_dict, image_list = make_index([4, 0, 4, 0, 4])
    labels = np.array([label for _, label in image_list])
    sampler = datasampler.select('class_random', make_opt(bs=4, samples_per_class=2), image_dict, image_list)
    batches = epochs(sampler, 50)
    assert batches.shape == (150, 4)
    assert set(labels[batches].ravel()) == {0, 2, 4}


def test_full_random_first_slots_are_class_balanced(index):
    """The first bs − 1 slots: class uniform, then image uniform in it, so P(g) = 1 / (C · |class(g)|), as in the
    reference."""
    _, image_list = index
    labels = np.array([label for _, label in image_list])
    torch.manual_seed(2)
    batches = epochs(datasampler.select('full_random', make_opt(bs=10, samples_per_class=1), *index), 200)
    counts = np.bincount(batches[:, :-1].ravel(), minlength=100)
    expected = counts.sum() / (10 * np.array(SIZES)[labels])
    assert scipy.stats.chisquare(counts, expected).pvalue > P_MIN
    assert scipy.stats.chisquare(counts).pvalue < P_MIN  # not uniform over images


def test_full_random_last_slot_repeats_an_earlier_label(index):
    """The last slot: a uniform image of the class of a uniformly chosen earlier slot."""
    _, image_list = index
    labels = np.array([label for _, label in image_list])
    torch.manual_seed(4)
    batches = epochs(datasampler.select('full_random', make_opt(bs=4, samples_per_class=2), *index), 300)
    batch_labels = labels[batches]
    assert (batch_labels[:, :-1] == batch_labels[:, -1:]).any(1).all()
    # With 3 earlier slots of distinct classes, the partner class is each of them with probability 1/3.
    distinct = np.array([len(set(row)) == 3 for row in batch_labels[:, :-1]])
    position = (batch_labels[distinct, :-1] == batch_labels[distinct, -1:]).argmax(1)
    assert scipy.stats.chisquare(np.bincount(position, minlength=3)).pvalue > P_MIN


def test_full_random_needs_two_slots(index):
    with pytest.raises(datasampler.SamplerConfigError, match='--bs must be at least 2'):
        datasampler.select('full_random', make_opt(bs=1, samples_per_class=1), *index)


def test_image_list_labels_must_be_image_dict_keys():
    image_dict, image_list = make_index([3, 3])
    image_list[0] = (image_list[0][0], 7)
    with pytest.raises(datasampler.SamplerConfigError, match='class keys missing from image_dict'):
        datasampler.select('class_random', make_opt(bs=2), image_dict, image_list)


def test_full_random_with_bs_2_gives_same_label_pairs(index):
    _, image_list = index
    labels = np.array([label for _, label in image_list])
    batches = epochs(datasampler.select('full_random', make_opt(bs=2, samples_per_class=1), *index), 20)
    assert (labels[batches[:, 0]] == labels[batches[:, 1]]).all()


# ---------------------------------------------------------------------------- notices for flags that do nothing

def notices(*argv):
    return datasampler.ignored_flag_notices(parameters.read_arguments(list(argv)))


def test_no_sampler_notice_at_defaults_or_for_flags_the_sampler_reads():
    for name in ('class_random', 'full_random', 'greedy_coreset', 'd2_coreset', 'disthist_batchmatch',
                 'fid_batchmatch'):
        assert notices('--data_sampler', name) == []
    assert notices('--data_sampler', 'disthist_batchmatch', '--data_batchmatch_ncomps', '20',
                   '--data_batchmatch_bigbs', '256', '--data_sampler_lowproj_dim', '32',
                   '--data_storage_no_update') == []
    assert notices('--data_sampler', 'greedy_coreset', '--data_gc_softened', '--data_batchmatch_bigbs', '128') == []
    assert notices('--data_sampler', 'd2_coreset', '--data_d2_coreset_lambda', '2') == []
    assert notices('--data_sampler', 'fid_batchmatch', '--data_idx_full_prec', '--data_mb_mom', '0.9') == []
    assert notices('--data_sampler', 'greedy_coreset', '--data_gc_coreset_lim', '1e-9') == []  # the default value
    assert notices('--data_sampler', 'no_such_sampler', '--data_sim_measure', 'cosine') == []  # select fails first


@pytest.mark.parametrize('name', ['greedy_coreset', 'd2_coreset', 'disthist_batchmatch', 'class_random'])
def test_flags_no_sampler_reads_are_accepted_and_ignored(name):
    assert notices('--data_sampler', name, '--data_sim_measure', 'cosine', '--data_gc_coreset_lim', '0.1') == [
        f'Notice: --data_gc_coreset_lim is accepted for compatibility and ignored by --data_sampler {name}.',
        f'Notice: --data_sim_measure is accepted for compatibility and ignored by --data_sampler {name}.']


@pytest.mark.parametrize('name', ['greedy_coreset', 'd2_coreset'])
def test_ncomps_is_ignored_by_the_coreset_samplers(name):
    assert notices('--data_sampler', name, '--data_batchmatch_ncomps', '3') == [
        f'Notice: --data_batchmatch_ncomps is ignored by --data_sampler {name} (only disthist_batchmatch, '
        f'fid_batchmatch read it).']


def test_notice_quotes_the_given_sampler_name_and_storage_flags_for_plain_samplers():
    assert notices('--data_sampler', 'my_class_random', '--data_gc_softened', '--data_batchmatch_bigbs', '64') == [
        'Notice: --data_batchmatch_bigbs is ignored by --data_sampler my_class_random (only greedy_coreset, '
        'd2_coreset, disthist_batchmatch, fid_batchmatch read it).',
        'Notice: --data_gc_softened is ignored by --data_sampler my_class_random (only greedy_coreset read it).']


def test_memory_bank_momentum_needs_full_refresh():
    assert notices('--data_sampler', 'greedy_coreset', '--data_mb_mom', '0.9', '--data_mb_lr', '0.5') == [
        'Notice: --data_mb_mom is ignored without --data_idx_full_prec.',
        'Notice: --data_mb_lr is ignored without --data_idx_full_prec.']


@pytest.mark.parametrize('module, flags', [
    (greedy_coreset_sampler, {'data_gc_coreset_lim': 0.5, 'data_batchmatch_ncomps': 3, 'data_sim_measure': 'cosine'}),
    (d2_coreset_sampler, {'data_batchmatch_ncomps': 3, 'data_sim_measure': 'cosine', 'data_gc_coreset_lim': 0.5})])
def test_ignored_flags_really_change_no_batch(module, flags):
    """The notices tell the truth: the same seed gives the same epoch with and without the ignored flags."""
    image_dict, image_list = make_index([6] * 8)
    storage = torch.randn(len(image_list), 4, generator=torch.Generator().manual_seed(1))
    epochs_drawn = []
    for overrides in ({}, flags):
        sampler = module.Sampler(make_opt(bs=8, samples_per_class=2, data_batchmatch_bigbs=24, **overrides),
                                 image_dict, image_list)
        sampler.storage = storage.clone()
        torch.manual_seed(0)
        sampler.precompute_indices()
        epochs_drawn.append(np.array([list(batch) for batch in sampler]))
    assert np.array_equal(*epochs_drawn)
