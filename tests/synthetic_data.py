"""Small synthetic image trees in the exact on-disk layouts of CUB200, CARS196 and SOP
(as their download archives unpack), for end-to-end tests.

Each class has its own colour and stripe pattern plus mild per-image noise and jitter, so a tiny
training run can learn to separate them. Deterministic: the same arguments give the same bytes.
Every `make_*` returns the dataset folder (`<root>/cub200`, ...), i.e. the value of `opt.source_path`
after the trainer appended the dataset name; pass `root` as `--source_path`.
"""
import colorsys
import os

import numpy as np
from PIL import Image

SOP_CATEGORIES = ('bicycle', 'cabinet', 'chair', 'coffee_maker', 'fan', 'kettle', 'lamp', 'mug', 'sofa',
                  'stapler', 'table', 'toaster')


def class_image(class_index, sample_index, size=32):
    """H×W×3 uint8 image: hue and stripe orientation/frequency depend on the class; noise on the sample."""
    rng = np.random.RandomState(1000 * class_index + sample_index)
    hue = (class_index * 0.618033988749895) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9))
    angle = np.pi * (class_index % 4) / 4 + rng.uniform(-0.1, 0.1)
    frequency = 2 + (class_index // 4) % 3
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 2 * np.pi)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * frequency * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    image = colour[None, None, :] * (0.4 + 0.6 * stripes[..., None])
    image = image + rng.normal(0, 0.05, size=image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _save(image, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def make_cub200(root, n_classes=8, per_class=4, size=32):
    """`<root>/cub200/images/NNN.Class_k/Class_K_000n_<id>.jpg`, classes 001…; one `._` resource-fork
    file per class (which the loader must ignore)."""
    folder = os.path.join(root, 'cub200')
    for c in range(n_classes):
        name = 'Bird_{}'.format(chr(ord('A') + c % 26) * (1 + c // 26))
        class_folder = os.path.join(folder, 'images', '{:03d}.{}'.format(c + 1, name))
        for s in range(per_class):
            _save(class_image(c, s, size),
                  os.path.join(class_folder, '{}_{:04d}_{}.jpg'.format(name, s + 1, 796000 + 37 * c + s)))
        with open(os.path.join(class_folder, '._{}_0001.jpg'.format(name)), 'wb') as handle:
            handle.write(b'\x00\x05\x16\x07')
    return folder


def make_cars196(root, n_classes=8, per_class=4, size=32):
    """`<root>/cars196/images/<Make Model Year>/<nnnnn>.jpg`: folder names with spaces, as in CARS196."""
    folder = os.path.join(root, 'cars196')
    for c in range(n_classes):
        class_folder = os.path.join(folder, 'images', 'Make{} Model {} {}'.format(c // 3, c, 2000 + c))
        for s in range(per_class):
            _save(class_image(c, s, size),
                  os.path.join(class_folder, '{:05d}.jpg'.format(1 + c * per_class + s)))
    return folder


def make_online_products(root, n_train_classes=6, n_test_classes=6, per_class=3, n_super=3, size=32):
    """`<root>/online_products/images/<category>_final/<product id>_<view>.JPG` plus
    `Info_Files/Ebay_train.txt`, `Ebay_test.txt` (header `image_id class_id super_class_id path`),
    `Ebay_info.txt` and per-category `<category>_final.txt` lists. Class ids are 1-based and
    continue from training into test; classes are assigned to super classes in consecutive blocks."""
    folder = os.path.join(root, 'online_products')
    n_classes = n_train_classes + n_test_classes
    rows, per_category = [], {}
    for c in range(n_classes):
        split_size = n_train_classes if c < n_train_classes else n_test_classes
        position = c if c < n_train_classes else c - n_train_classes
        super_id = 1 + min(position * n_super // max(split_size, 1), n_super - 1)
        category = SOP_CATEGORIES[(super_id - 1) % len(SOP_CATEGORIES)] + '_final'
        product = 111085122871 + 7919 * c
        for s in range(per_class):
            path = '{}/{}_{}.JPG'.format(category, product, s)
            _save(class_image(c, s, size), os.path.join(folder, 'images', path))
            rows.append((c + 1, super_id, path, c < n_train_classes))
            per_category.setdefault(category, []).append((c + 1, super_id, path))
    info = os.path.join(folder, 'Info_Files')
    os.makedirs(info, exist_ok=True)
    header = 'image_id class_id super_class_id path\n'
    for name, train in (('Ebay_train.txt', True), ('Ebay_test.txt', False)):
        selected = [row for row in rows if row[3] == train]
        with open(os.path.join(info, name), 'w') as handle:
            handle.write(header + ''.join('{} {} {} {}\n'.format(i + 1, c, s, p)
                                          for i, (c, s, p, _) in enumerate(selected)))
    with open(os.path.join(info, 'Ebay_info.txt'), 'w') as handle:
        handle.write(header + ''.join('{} {} {} {}\n'.format(i + 1, c, s, p) for i, (c, s, p, _) in enumerate(rows)))
    for category, entries in per_category.items():
        with open(os.path.join(info, category + '.txt'), 'w') as handle:
            handle.write(header + ''.join('{} {} {} {}\n'.format(i + 1, c, s, p)
                                          for i, (c, s, p) in enumerate(entries)))
    return folder
