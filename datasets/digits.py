"""Embedded dataset `--dataset digits`: scikit-learn's bundled 8×8 digits (1797 images, 10 classes),
nothing downloaded, `--source_path` ignored.

Design: the images are materialised once as PNG files in the CARS-like layout
`<cache>/lsd_dml/digits/images/<digit>/<sample index>.png` (<cache> = $XDG_CACHE_HOME or ~/.cache),
written into a temporary folder and renamed into place, so concurrent runs never see a half-written
tree. The generic class-folder builder then treats it like the benchmarks: real image paths
(tools can open `image_paths` with PIL), zero-shot split (train on digits 0-4, test on 5-9), the same
dict and attributes. Pipelines: `image_transforms.digits_pipeline` (32 px, no flip).
"""
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from datasets import class_folders
from datasets.errors import DatasetError
from datasets.image_transforms import digits_pipeline
from datasets.tv_split import evenly_spaced_positions


def cache_root():
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'lsd_dml', 'digits')


def digit_pixels():
    """(uint8 N×8×8 images on the 0-255 scale, N digit labels) of scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return np.round(digits.images * (255.0 / 16.0)).astype(np.uint8), digits.target


def materialise(root):
    """Write the PNG tree under `root` unless a complete one is already there (atomic rename)."""
    if os.path.isdir(os.path.join(root, 'images')):
        return root
    parent = os.path.dirname(root)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix='.digits.')
    except OSError as error:
        raise DatasetError('Cannot write the digits cache {} ({}); set XDG_CACHE_HOME to a writable folder.'
                           .format(parent, error)) from None
    try:
        pixels, targets = digit_pixels()
        for index, (image, target) in enumerate(zip(pixels, targets)):
            folder = os.path.join(staging, 'images', str(target))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, '{:04d}.png'.format(index)))
        os.rename(staging, root)
    except OSError:
        if not os.path.isdir(os.path.join(root, 'images')):  # not a race lost to another process
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def give(opt, data_path=None):
    """`data_path` is ignored: the data ship with scikit-learn."""
    images_path = materialise(cache_root()) + '/images'
    folders = sorted(class_folders.list_folders(images_path), key=int)
    class_paths = {int(folder): class_folders.list_files(images_path + '/' + folder) for folder in folders}
    class_names = {int(folder): folder for folder in folders}
    return class_folders.build(opt, class_paths, class_names, evenly_spaced_positions, digits_pipeline, images_path)
