"""In-Shop and iNaturalist builders on generated trees in their release layouts: labels, query/gallery
roles, the train/validation split, label noise on training items only, and one-line errors that name the
file and line of a malformed partition or list file."""
import os
import shutil

import numpy as np
import pytest
import torch

import datasets
import parameters
from datasets import DatasetError
from datasets.eval_cache import CachedLoader
from datasets.query_gallery import query_gallery_of
import synthetic_retrieval_data as generated


def options(*argv):
    return parameters.read_arguments(list(argv))


@pytest.fixture(scope='module')
def inshop(tmp_path_factory):
    return generated.make_inshop(str(tmp_path_factory.mktemp('inshop_tree')), size=8)


@pytest.fixture(scope='module')
def inaturalist(tmp_path_factory):
    return generated.make_inaturalist(str(tmp_path_factory.mktemp('inat_tree')), size=8)


def item_of(path):
    return path.split('/')[-2]


# ------------------------------------------------------------------------------------------- In-Shop
def test_inshop_training_items_and_query_gallery_test_split(inshop):
    data = datasets.select('inshop', options('--dataset', 'inshop'), inshop)
    rows = generated.inshop_rows()
    train_items = sorted({item for _, item, status, _ in rows if status == 'train'})
    test_items = sorted({item for _, item, status, _ in rows if status != 'train'})
    training, testing = data['training'], data['testing']
    assert training.conversion == dict(enumerate(train_items))
    assert testing.conversion == dict(enumerate(test_items))
    assert all(training.conversion[label] == item_of(path) for path, label in training.image_list)
    assert all(testing.conversion[label] == item_of(path) for path, label in testing.image_list)
    assert training.query_gallery is None and data['evaluation'].query_gallery is None
    roles = testing.query_gallery
    status = {os.path.join(inshop, name): s for name, _, s, _ in rows}
    assert [status[path] for path, _ in testing.image_list] == \
        ['query' if q else 'gallery' for q in roles.is_query]
    assert (roles.is_query ^ roles.is_gallery).all()
    assert len(roles.query_indices) == sum(s == 'query' for _, _, s, _ in rows)


def test_inshop_partition_file_in_eval_folder(tmp_path):
    folder = generated.make_inshop(str(tmp_path), size=8, in_eval_folder=True, n_train_items=2, n_test_items=2)
    assert not os.path.exists(os.path.join(folder, 'list_eval_partition.txt'))
    data = datasets.select('inshop', options(), folder)
    assert len(data['training']) == 6 and len(data['testing']) == 7


def test_inshop_tv_split_by_items_and_by_samples(inshop):
    data = datasets.select('inshop', options('--use_tv_split', '--tv_split_perc', '0.5'), inshop)
    assert sorted(data['training'].avail_classes) == [0, 1, 2] and sorted(data['validation'].avail_classes) == [0, 1, 2]
    train_items = {item_of(p) for p, _ in data['training'].image_list}
    val_items = {item_of(p) for p, _ in data['validation'].image_list}
    assert not train_items & val_items and len(train_items | val_items) == 6
    assert data['validation'].query_gallery is None and data['testing'].query_gallery is not None
    data = datasets.select('inshop', options('--use_tv_split', '--tv_split_by_samples', '--tv_split_perc', '0.7'),
                           inshop)
    assert [len(v) for v in data['training'].image_dict.values()] == [2] * 6
    assert [len(v) for v in data['validation'].image_dict.values()] == [1] * 6
    assert all(p.endswith('03_3_front.jpg') for p, _ in data['validation'].image_list)


def test_label_noise_touches_training_items_only(inshop):
    clean = datasets.select('inshop', options(), inshop)
    noisy = datasets.select('inshop', options('--noisy_label', '--noisy_ratio', '0.9', '--seed', '1'), inshop)
    assert [l for _, l in noisy['training'].image_list] != [l for _, l in clean['training'].image_list]
    for split in ('testing', 'evaluation'):
        assert noisy[split].image_list == clean[split].image_list
    assert np.array_equal(noisy['testing'].query_gallery.is_query, clean['testing'].query_gallery.is_query)


def test_roles_follow_a_shard_subset_and_the_evaluation_cache(inshop):
    testing = datasets.select('inshop', options(), inshop)['testing']
    shard = torch.utils.data.Subset(testing, range(3))
    assert query_gallery_of(shard) is testing.query_gallery
    loader = CachedLoader(torch.utils.data.DataLoader(shard, batch_size=2), 'cpu')
    assert query_gallery_of(loader.dataset) is testing.query_gallery


def write_lines(path, lines):
    with open(path, 'w') as handle:
        handle.write(''.join(line + '\n' for line in lines))


@pytest.mark.parametrize('edit, line, words', [
    (lambda lines: ['many'] + lines[1:], 1, 'number of rows'),
    (lambda lines: lines[:1] + ['image_name item evaluation_status'] + lines[2:], 2, 'header'),
    (lambda lines: lines[:4] + [lines[4] + ' extra'] + lines[5:], 5, '3 fields'),
    (lambda lines: lines[:6] + [lines[6].replace('train', 'test')] + lines[7:], 7, "'test'"),
    (lambda lines: ['3'] + lines[1:], 1, 'announces 3 rows'),
])
def test_malformed_partition_names_file_and_line(tmp_path, inshop, edit, line, words):
    folder = str(tmp_path / 'inshop')
    os.makedirs(folder)
    os.symlink(os.path.join(inshop, 'img'), os.path.join(folder, 'img'))
    with open(os.path.join(inshop, 'list_eval_partition.txt')) as handle:
        lines = handle.read().splitlines()
    partition = os.path.join(folder, 'list_eval_partition.txt')
    write_lines(partition, edit(lines))
    with pytest.raises(DatasetError) as caught:
        datasets.select('inshop', options(), folder)
    message = str(caught.value)
    assert message.startswith('{}, line {}:'.format(partition, line)) and words in message and '\n' not in message


def test_missing_partition_file_and_image_folder(tmp_path):
    with pytest.raises(DatasetError, match='nothing not found; expected layout: <source>/inshop/img'):
        datasets.check_data_folder('inshop', str(tmp_path / 'nothing'))
    os.makedirs(tmp_path / 'inshop' / 'Eval')
    with pytest.raises(DatasetError, match='inshop/img not found'):
        datasets.select('inshop', options(), str(tmp_path / 'inshop'))
    os.makedirs(tmp_path / 'inshop' / 'img' / 'x')
    with pytest.raises(DatasetError, match='list_eval_partition.txt not found'):
        datasets.select('inshop', options(), str(tmp_path / 'inshop'))


# --------------------------------------------------------------------------------------- iNaturalist
def test_inaturalist_classes_from_the_class_id_folders(inaturalist):
    data = datasets.select('inaturalist', options(), inaturalist)
    rows = generated.inaturalist_rows()
    for split, part in (('training', 'Inaturalist_train_set1.txt'), ('testing', 'Inaturalist_test_set1.txt')):
        ids = sorted({int(path.split('/')[-2]) for name, path, _ in rows if name == part})
        dataset = data[split]
        assert [int(name.split('/')[1]) for _, name in sorted(dataset.conversion.items())] == ids
        for path, label in dataset.image_list:
            assert dataset.conversion[label] == '/'.join(path.split('/')[-3:-1])
        assert dataset.query_gallery is None
    listed = [os.path.join(inaturalist, p) for name, p, _ in rows if name == 'Inaturalist_train_set1.txt']
    assert sorted(p for p, _ in data['training'].image_list) == sorted(listed)


def test_inaturalist_lists_in_the_splits_folder_and_tv_split(tmp_path):
    folder = generated.make_inaturalist(str(tmp_path), size=8, lists_folder='Inat_dataset_splits')
    data = datasets.select('inaturalist', options('--use_tv_split', '--tv_split_perc', '0.5'), folder)
    assert len(data['training'].avail_classes) == 3 and len(data['validation'].avail_classes) == 3
    assert len(data['testing']) == 12


def test_inaturalist_accepts_the_release_names_and_the_old_spelling(tmp_path):
    for prefix in ('Inaturalist', 'iNaturalist'):
        for lists_folder in ('Inat_dataset_splits', ''):
            folder = generated.make_inaturalist(str(tmp_path / prefix / (lists_folder or 'beside')), size=8,
                                                lists_folder=lists_folder, list_prefix=prefix)
            data = datasets.select('inaturalist', options(), folder)
            assert len(data['training'].avail_classes) == 6 and len(data['testing'].avail_classes) == 4


def test_missing_lists_name_the_release_file(tmp_path):
    folder = tmp_path / 'inaturalist'
    (folder / 'train_val2018').mkdir(parents=True)
    with pytest.raises(DatasetError, match='Inat_dataset_splits/Inaturalist_train_set1.txt not found'):
        datasets.select('inaturalist', options(), str(folder))


def test_malformed_list_line_names_file_and_line(tmp_path, inaturalist):
    folder = str(tmp_path / 'inaturalist')
    shutil.copytree(inaturalist, folder, symlinks=True)
    path = os.path.join(folder, 'Inaturalist_test_set1.txt')
    with open(path) as handle:
        lines = handle.read().splitlines()
    lines[3] = lines[3].replace('/', '/x', 2).replace(lines[3].split('/')[2], 'not_an_id')
    write_lines(path, lines)
    with pytest.raises(DatasetError) as caught:
        datasets.select('inaturalist', options(), folder)
    assert str(caught.value).startswith('{}, line 4:'.format(path))


def test_registry_lists_the_new_benchmarks():
    with pytest.raises(NotImplementedError, match='online_products, inshop, inaturalist, digits, csv, folder'):
        datasets.select('imagenet', options(), '/nonexistent')
