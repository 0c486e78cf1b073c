"""Dataset registry: `select(name, opt, data_path)` picks a builder by substring, in the order cub200,
cars196, online_products, inshop, inaturalist, then the embedded digits, then a user's own data (csv: an
open-metric-learning CSV file; folder: a <class>/<images> tree), and returns the dict of splits (training /
validation / testing / evaluation / evaluation_train [/ super_evaluation], see `dataset_dict`).
`data_folder(name, source_path)` says where a dataset's files are: `<source_path>/<name>` for the
benchmarks, `--source_path` itself for a user's own data.

The loop's side of the fast pipeline: `EpochTaggedBatchSampler` (the epoch reaches persistent workers
with each key), `device_normaliser` (uint8 batches become normalised float32 on the device),
`CachedLoader` / `cached` (--eval_cache) and `loader_options` (DataLoader kwargs).
"""
import os

from datasets import cars196, cub200, digits, image_folder, inaturalist, inshop, oml_csv, stanford_online_products
from datasets.device_normalisation import device_normaliser
from datasets.errors import DatasetError
from datasets.eval_cache import CachedLoader, cached
from datasets.loader_options import loader_options
from datasets.sample_randomness import EpochTaggedBatchSampler, sample_seed
from datasets.tv_split import check_rankable, fold_choice

__all__ = ['BUILDERS', 'CachedLoader', 'DatasetError', 'EpochTaggedBatchSampler', 'cached', 'check_rankable',
           'data_folder', 'device_normaliser', 'is_own_data', 'loader_options', 'sample_seed', 'select']

BUILDERS = (('cub200', cub200.give), ('cars196', cars196.give),
            ('online_products', stanford_online_products.give), ('inshop', inshop.give),
            ('inaturalist', inaturalist.give), ('digits', digits.give), ('csv', oml_csv.give),
            ('folder', image_folder.give))
OWN_DATA = ('csv', 'folder')   # --source_path names the data itself


LAYOUTS = {'cub200': cub200.LAYOUT, 'cars196': cars196.LAYOUT, 'online_products': stanford_online_products.LAYOUT,
           'inshop': inshop.LAYOUT, 'inaturalist': inaturalist.LAYOUT}


def builder_key(name):
    return next((key for key, _ in BUILDERS if key in name), None)


def is_own_data(name):
    return builder_key(name) in OWN_DATA


def data_folder(name, source_path):
    """The path a dataset is read from: `--source_path` itself for a CSV file or an image folder, the
    benchmark's folder `<source_path>/<name>` otherwise."""
    return source_path if is_own_data(name) else source_path + '/' + name


def check_data_folder(name, data_path):
    """The benchmark's data folder exists and is not empty: checked at start-up, before any backbone weights
    are downloaded or any folder is created (the full layout is checked when the datasets are built)."""
    from datasets.errors import require_folder
    if builder_key(name) == 'csv':
        if not os.path.isfile(data_path):
            raise DatasetError('--source_path {}: no such CSV file (--dataset csv reads {})'.format(
                data_path, oml_csv.LAYOUT))
        return
    if builder_key(name) == 'folder':
        require_folder(data_path, image_folder.LAYOUT)
        return
    for key, layout in LAYOUTS.items():
        if key in name:
            require_folder(data_path, layout)
            return


def select(name, opt, data_path):
    for key, give in BUILDERS:
        if key in name:
            return give(opt, data_path)
    raise NotImplementedError('Dataset {} not available! Choose one of {}.'
                              .format(name, ', '.join(key for key, _ in BUILDERS)))
