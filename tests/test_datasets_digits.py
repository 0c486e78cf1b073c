"""The embedded `--dataset digits` (scikit-learn's 8×8 digits as cached PNG files)."""
import os

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import datasets
import parameters
from datasets import digits


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp('xdg_cache')
    patch = pytest.MonkeyPatch()
    patch.setenv('XDG_CACHE_HOME', str(root))
    yield str(root)
    patch.undo()


@pytest.fixture(scope='module')
def data(cache):
    opt = parameters.read_arguments(['--dataset', 'digits', '--arch', 'resnet18_frozen'])
    return datasets.select('digits', opt, '/no/such/source/digits')


def test_zero_shot_split(data):
    targets = load_digits().target
    assert data['training'].avail_classes == [0, 1, 2, 3, 4]
    assert data['testing'].avail_classes == [5, 6, 7, 8, 9]
    assert len(data['training']) == int((targets < 5).sum()) == 901
    assert len(data['testing']) == int((targets >= 5).sum()) == 896
    assert data['validation'] is None and data['evaluation'].image_list == data['training'].image_list
    assert data['testing'].conversion == {c: str(c) for c in range(5, 10)}


def test_images_are_cached_png_files_with_the_sklearn_pixels(data, cache):
    path, label = data['testing'].image_list[0]
    assert path.startswith(os.path.join(cache, 'lsd_dml', 'digits', 'images', '5') + '/')
    index = int(os.path.basename(path)[:-4])
    sample = load_digits()
    assert sample.target[index] == label == 5
    pixels = np.asarray(Image.open(path))
    np.testing.assert_array_equal(pixels, np.round(sample.images[index] * 255 / 16).astype(np.uint8))


def test_items_and_index_structure(data):
    label, image, index = data['training'][900]
    assert (label, index) == (4, 900) and tuple(image.shape) == (3, 32, 32)
    training = data['training']
    assert training.image_paths is training.image_list
    assert [g for key in training.avail_classes for _, g in training.image_dict[key]] == list(range(901))


def test_cache_is_reused(data, cache):
    root = digits.cache_root()
    marker = os.path.join(root, 'images', '0', '0000.png')
    before = os.stat(marker).st_mtime_ns
    assert digits.materialise(root) == root
    assert os.stat(marker).st_mtime_ns == before
    assert not [name for name in os.listdir(os.path.dirname(root)) if name.startswith('.digits.')]


def test_splits_and_noise_work_like_the_benchmarks(cache):
    opt = parameters.read_arguments(['--dataset', 'digits', '--use_tv_split', '--noisy_label', '--noisy_ratio', '0.2'])
    data = datasets.select('digits', opt, None)
    assert data['training'].avail_classes == [0, 1, 2, 3] and data['validation'].avail_classes == [0]
    assert {label for _, label in data['validation'].image_list} == {0}
    noisy = [label for _, label in data['training'].image_list]
    clean = [label for _, label in data['evaluation'].image_list]
    assert noisy != clean and set(noisy) <= {0, 1, 2, 3}


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    monkeypatch.setenv('XDG_CACHE_HOME', str(blocker / 'cache'))
    with pytest.raises(datasets.DatasetError, match='digits cache .*a_file.*XDG_CACHE_HOME'):
        datasets.select('digits', parameters.read_arguments(['--dataset', 'digits']), None)
