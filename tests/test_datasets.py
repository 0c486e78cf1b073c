"""Dataset builders on synthetic trees: layouts, class ids, splits, global index order, the returned dict,
conversions and errors."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
import parameters
from datasets import DatasetError
from tests import synthetic_data


def options(*argv):
    return parameters.read_arguments(list(argv))


def write_image(path, colour=(10, 20, 30), size=8, mode='RGB'):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, (size, size), colour if mode == 'RGB' else colour[0]).save(path)


def check_index_structure(dataset):
    """Global index over sorted classes then stored order; image_dict entries [path, g]."""
    assert dataset.avail_classes == sorted(dataset.image_dict)
    assert dataset.image_paths is dataset.image_list
    assert len(dataset) == dataset.n_files == len(dataset.image_list)
    expected = [(path, key) for key in dataset.avail_classes for path, _ in dataset.image_dict[key]]
    assert dataset.image_list == expected
    indices = [g for key in dataset.avail_classes for _, g in dataset.image_dict[key]]
    assert indices == list(range(dataset.n_files))
    for key in dataset.avail_classes:
        for path, g in dataset.image_dict[key]:
            assert dataset.image_list[g] == (path, key)


def labels_of(dataset):
    return sorted({label for _, label in dataset.image_list})


# ----------------------------------------------------------------------------------------------- CUB
@pytest.fixture(scope='module')
def cub_fake(tmp_path_factory):
    """A hand-made tree: folders 002.B, 001.A, ._junk, 003.C, 004.D with 2 images each plus a ._x.jpg."""
    folder = str(tmp_path_factory.mktemp('cubfake') / 'cub200')
    for name in ('002.B', '001.A', '._junk', '003.C', '004.D'):
        for i in (2, 1):
            write_image('{}/images/{}/img_{}.jpg'.format(folder, name, i))
        with open('{}/images/{}/._x.jpg'.format(folder, name), 'wb') as handle:
            handle.write(b'\x00')
    return folder


def test_cub_classes_split_and_resource_forks_ignored(cub_fake):
    data = datasets.select('cub200', options(), cub_fake)
    training, testing = data['training'], data['testing']
    assert training.avail_classes == [0, 1] and testing.avail_classes == [2, 3]
    assert training.conversion == {0: 'A', 1: 'B'} and testing.conversion == {2: 'C', 3: 'D'}
    assert data['evaluation'].conversion == {0: 'A', 1: 'B'}
    assert all('._' not in path for ds in (training, testing) for path, _ in ds.image_list)
    assert [p.split('/images/')[1] for p, _ in training.image_list] == \
        ['001.A/img_1.jpg', '001.A/img_2.jpg', '002.B/img_1.jpg', '002.B/img_2.jpg']
    for dataset in data.values():
        if dataset is not None:
            check_index_structure(dataset)
    assert data['validation'] is None and 'super_evaluation' not in data


def test_returned_dict_keys_and_transform_modes(cub_fake):
    data = datasets.select('cub200', options(), cub_fake)
    assert set(data) == {'training', 'validation', 'testing', 'evaluation', 'evaluation_train'}
    assert not data['training'].is_validation and not data['evaluation_train'].is_validation
    assert data['testing'].is_validation and data['evaluation'].is_validation
    assert data['evaluation'].image_list == data['training'].image_list


@pytest.mark.parametrize('pipeline,dtype', [('reference', torch.float32), ('fast', torch.uint8)])
def test_item_is_label_image_index(cub_fake, pipeline, dtype):
    data = datasets.select('cub200', options('--data_pipeline', pipeline), cub_fake)
    label, image, index = data['testing'][3]
    assert (label, index) == (3, 3)
    assert image.dtype == dtype
    assert tuple(image.shape) == (3, 224, 224)


def test_cub_sample_split_is_evenly_spaced(tmp_path):
    """Worked example: n = 10, p = 0.8 -> training positions 0,1,3,4,5,6,8,9 and validation 2,7."""
    folder = str(tmp_path / 'cub200')
    for c in (1, 2):
        for i in range(10):
            write_image('{}/images/{:03d}.C{}/{:02d}.jpg'.format(folder, c, c, i))
    data = datasets.select('cub200', options('--use_tv_split', '--tv_split_by_samples'), folder)
    position = lambda dataset: [int(p[-6:-4]) for p, label in dataset.image_list if label == 0]
    assert position(data['training']) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert position(data['validation']) == [2, 7]
    assert data['training'].avail_classes == data['validation'].avail_classes == [0]
    assert data['testing'].avail_classes == [1] and len(data['testing']) == 10


def test_class_split_rekeys_training_and_validation(tmp_path):
    """Worked example: p = 0.8 on 10 training classes -> 8 + 2 classes, both from 0; test keeps its ids."""
    folder = synthetic_data.make_cub200(str(tmp_path), n_classes=20, per_class=1, size=8)
    data = datasets.select('cub200', options('--use_tv_split'), folder)
    assert data['training'].avail_classes == list(range(8))
    assert data['validation'].avail_classes == [0, 1]
    assert data['testing'].avail_classes == list(range(10, 20))
    assert data['validation'].conversion == {0: 'Bird_I', 1: 'Bird_J'}
    assert data['validation'].image_list[0][0].split('/')[-2] == '009.Bird_I'
    assert data['evaluation'].avail_classes == list(range(8)) and data['validation'].is_validation


# ---------------------------------------------------------------------------------------------- CARS
def test_cars_class_ids_follow_string_sort(tmp_path):
    folder = str(tmp_path / 'cars196')
    names = ['b car 2001', 'Audi 10', 'a car', 'Audi 9']  # string order: 'Audi 10' < 'Audi 9' < 'a car' < 'b car'
    for name in names:
        write_image('{}/images/{}/1.jpg'.format(folder, name))
    data = datasets.select('cars196', options(), folder)
    assert data['training'].conversion == {0: 'Audi 10', 1: 'Audi 9'}
    assert data['testing'].conversion == {2: 'a car', 3: 'b car 2001'}
    assert [path.split('/')[-2] for path, _ in data['testing'].image_list] == ['a car', 'b car 2001']


def test_cars_sample_split_draws_from_global_numpy(tmp_path):
    folder = synthetic_data.make_cars196(str(tmp_path), n_classes=4, per_class=10, size=8)
    np.random.seed(3)
    data = datasets.select('cars196', options('--use_tv_split', '--tv_split_by_samples'), folder)
    np.random.seed(3)
    for key in (0, 1):
        paths = sorted(p for p, _ in data['evaluation'].image_list + data['validation'].image_list
                       if _ == key)
        drawn = np.random.choice(10, 8, replace=False)
        assert [p for p, label in data['training'].image_list if label == key] == [paths[i] for i in drawn]
        assert [p for p, label in data['validation'].image_list if label == key] == \
            [paths[i] for i in range(10) if i not in drawn]


def test_cars_with_synthetic_tree_has_half_the_classes(tmp_path):
    folder = synthetic_data.make_cars196(str(tmp_path), n_classes=8, per_class=3, size=8)
    data = datasets.select('cars196', options('--dataset', 'cars196'), folder)
    assert labels_of(data['training']) == [0, 1, 2, 3] and labels_of(data['testing']) == [4, 5, 6, 7]


# ----------------------------------------------------------------------------------------------- SOP
def write_sop(folder, train_rows, test_rows):
    """rows: (class_id, super_class_id, category, product, view)."""
    info = os.path.join(folder, 'Info_Files')
    os.makedirs(info, exist_ok=True)
    for name, rows in (('Ebay_train.txt', train_rows), ('Ebay_test.txt', test_rows)):
        lines = ['image_id class_id super_class_id path']
        for i, (class_id, super_id, category, product, view) in enumerate(rows):
            path = '{}_final/{}_{}.JPG'.format(category, product, view)
            write_image(os.path.join(folder, 'images', path))
            lines.append('{} {} {} {}'.format(i + 1, class_id, super_id, path))
        with open(os.path.join(info, name), 'w') as handle:
            handle.write('\n'.join(lines) + '\n')


@pytest.fixture(scope='module')
def sop_fake(tmp_path_factory):
    """Super 2 (mug) appears before super 1 (bicycle); class 4 before class 3 within super 1."""
    folder = str(tmp_path_factory.mktemp('sopfake') / 'online_products')
    train = [(1, 2, 'mug', 101, 0), (1, 2, 'mug', 101, 1), (2, 2, 'mug', 102, 0), (2, 2, 'mug', 102, 1),
             (4, 1, 'bicycle', 104, 0), (4, 1, 'bicycle', 104, 1), (4, 1, 'bicycle', 104, 2),
             (3, 1, 'bicycle', 103, 0), (3, 1, 'bicycle', 103, 1),
             (5, 1, 'bicycle', 105, 0), (5, 1, 'bicycle', 105, 1)]
    test = [(7, 1, 'bicycle', 107, 0), (6, 2, 'mug', 106, 0), (7, 1, 'bicycle', 107, 1)]
    write_sop(folder, train, test)
    return folder


def test_sop_labels_and_super_classes(sop_fake):
    data = datasets.select('online_products', options(), sop_fake)
    assert labels_of(data['training']) == [0, 1, 2, 3, 4]
    assert labels_of(data['testing']) == [5, 6]  # class_id - 1, not re-based
    assert [p.split('/')[-1] for p, l in data['testing'].image_list] == ['106_0.JPG', '107_0.JPG', '107_1.JPG']
    supers = data['super_evaluation']
    assert supers.avail_classes == [0, 1] and supers.conversion == {0: 'bicycle_final', 1: 'mug_final'}
    # classes in first-appearance order inside the super class, file order inside each class
    assert [p.split('/')[-1] for p, l in supers.image_list if l == 0] == \
        ['104_0.JPG', '104_1.JPG', '104_2.JPG', '103_0.JPG', '103_1.JPG', '105_0.JPG', '105_1.JPG']
    assert data['training'].conversion == {0: '101', 1: '102', 2: '103', 3: '104', 4: '105'}
    assert data['testing'].conversion == {5: '106', 6: '107'}
    for dataset in data.values():
        if dataset is not None:
            check_index_structure(dataset)


def test_sop_class_split_counts_from_zero(sop_fake):
    """Per super class in first-appearance order (mug: 2 classes -> 1 + 1; bicycle: 3 -> 2 + 1)."""
    data = datasets.select('online_products', options('--use_tv_split'), sop_fake)
    name = lambda ds, key: {p.split('/')[-1].split('_')[0] for p, l in ds.image_list if l == key}
    assert data['training'].avail_classes == [0, 1, 2] and data['validation'].avail_classes == [0, 1]
    assert [name(data['training'], k) for k in range(3)] == [{'101'}, {'103'}, {'104'}]
    assert [name(data['validation'], k) for k in range(2)] == [{'102'}, {'105'}]
    assert labels_of(data['testing']) == [5, 6]
    assert data['super_evaluation'].n_files == 2 + 5


def test_sop_sample_split_takes_first_images(sop_fake):
    data = datasets.select('online_products', options('--use_tv_split', '--tv_split_by_samples'), sop_fake)
    files = lambda ds, key: [p.split('/')[-1] for p, l in ds.image_list if l == key]
    assert files(data['training'], 3) == ['104_0.JPG', '104_1.JPG'] and files(data['validation'], 3) == ['104_2.JPG']
    assert files(data['training'], 0) == ['101_0.JPG'] and files(data['validation'], 0) == ['101_1.JPG']
    assert data['training'].avail_classes == data['validation'].avail_classes == [0, 1, 2, 3, 4]


def test_sop_uses_its_data_path_argument(sop_fake):
    opt = options('--source_path', '/does/not/exist')
    assert len(datasets.select('online_products', opt, sop_fake)['training']) == 11


def test_synthetic_sop_tree_loads(tmp_path):
    folder = synthetic_data.make_online_products(str(tmp_path), n_train_classes=6, n_test_classes=4,
                                                 per_class=2, n_super=3, size=8)
    data = datasets.select('online_products', options(), folder)
    assert labels_of(data['training']) == list(range(6)) and labels_of(data['testing']) == [6, 7, 8, 9]
    assert data['super_evaluation'].avail_classes == [0, 1, 2]
    for name in ('Ebay_info.txt', 'bicycle_final.txt'):
        assert os.path.isfile(os.path.join(folder, 'Info_Files', name))


# ---------------------------------------------------------------------------------------- label noise
def test_noisy_training_labels_only(tmp_path):
    folder = synthetic_data.make_cub200(str(tmp_path), n_classes=10, per_class=4, size=8)
    opt = options('--noisy_label', '--noisy_ratio', '0.4', '--seed', '0')
    data = datasets.select('cub200', opt, folder)
    clean = datasets.select('cub200', options(), folder)
    # worked example: 5 classes × 4 samples, r = 0.4, seed 0
    assert [label for _, label in data['training'].image_list] == [0, 4, 2, 2, 1, 0, 1, 2, 1, 4, 3, 4, 3, 1, 3,
                                                                   3, 4, 1, 4, 4]
    assert [p for p, _ in data['training'].image_list] == [p for p, _ in clean['training'].image_list]
    assert data['training'].image_paths is data['training'].image_list
    assert data['training'].avail_classes == [0, 1, 2, 3, 4] and data['training'].n_files == 20
    for key in ('evaluation', 'evaluation_train', 'testing'):
        assert data[key].image_list == clean[key].image_list
    noisy_dict = data['training'].image_dict
    assert list(noisy_dict) == [0, 1, 2, 3, 4]
    assert noisy_dict[2] == [[data['training'].image_list[g][0], g] for g in (2, 3, 7)]
    assert data['training'][1][0] == 4


def test_noisy_label_can_empty_a_class(tmp_path):
    folder = synthetic_data.make_cub200(str(tmp_path), n_classes=4, per_class=1, size=8)
    data = datasets.select('cub200', options('--noisy_label', '--noisy_ratio', '1.0', '--noisy_type', 'pairflip'),
                           folder)
    assert [label for _, label in data['training'].image_list] == [1, 0]
    assert data['training'].image_dict == {0: [[data['training'].image_list[1][0], 1]],
                                           1: [[data['training'].image_list[0][0], 0]]}


# -------------------------------------------------------------------------------------------- errors
def test_unknown_dataset_name():
    with pytest.raises(NotImplementedError, match='cub200, cars196, online_products'):
        datasets.select('imagenet', options(), '/tmp')


@pytest.mark.parametrize('name', ['cub200', 'cars196', 'online_products'])
def test_missing_and_empty_folders_name_the_path(tmp_path, name):
    missing = str(tmp_path / 'nowhere' / name)
    with pytest.raises(DatasetError, match='nowhere/{}/images.*expected layout'.format(name)) as error:
        datasets.select(name, options(), missing)
    assert '\n' not in str(error.value)
    os.makedirs(str(tmp_path / name / 'images'))
    with pytest.raises(DatasetError, match='empty'):
        datasets.select(name, options(), str(tmp_path / name))


def test_sop_missing_info_file(tmp_path):
    write_image(str(tmp_path / 'online_products' / 'images' / 'mug_final' / '1_0.JPG'))
    with pytest.raises(DatasetError, match='Info_Files/Ebay_train.txt'):
        datasets.select('online_products', options(), str(tmp_path / 'online_products'))


def test_class_folders_without_images(tmp_path):
    os.makedirs(str(tmp_path / 'cars196' / 'images' / 'empty model'))
    with pytest.raises(DatasetError, match='holds no images'):
        datasets.select('cars196', options(), str(tmp_path / 'cars196'))


def test_cub_badly_named_folder(tmp_path):
    write_image(str(tmp_path / 'cub200' / 'images' / 'Albatross' / '1.jpg'))
    with pytest.raises(DatasetError, match="'Albatross'.*NNN"):
        datasets.select('cub200', options(), str(tmp_path / 'cub200'))


def test_unreadable_image_names_the_file(tmp_path):
    folder = str(tmp_path / 'cars196')
    for name in ('a', 'b'):
        write_image('{}/images/{}/1.jpg'.format(folder, name))
    with open('{}/images/a/1.jpg'.format(folder), 'wb') as handle:
        handle.write(b'not an image')
    data = datasets.select('cars196', options(), folder)
    with pytest.raises(DatasetError, match='a/1.jpg'):
        data['training'][0]
    assert data['testing'][0][1].shape[0] == 3


def test_unknown_augmentation(cub_fake):
    with pytest.raises(DatasetError, match='--augmentation.*base, big, adv, red'):
        datasets.select('cub200', options('--augmentation', 'huge'), cub_fake)
