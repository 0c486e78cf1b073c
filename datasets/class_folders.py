"""Shared builder of the `images/<class folder>/<files>` datasets: CUB200, CARS196 and digits.

The first ⌊K/2⌋ sorted class ids train and the rest test (zero-shot). A class split re-keys training and
validation from 0; a sample split keeps the ids. Test ids are never touched.
"""
import os

from datasets.dataset_dict import build_dataset_dict
from datasets.errors import DatasetError
from datasets.tv_split import fold_choice, split_classes, split_samples


def list_folders(path, keep=lambda name: True):
    return [name for name in os.listdir(path) if keep(name) and os.path.isdir(os.path.join(path, name))]


def list_files(folder, keep=lambda name: True):
    """Sorted full paths `<folder>/<file>`, joined with '/' like the reference."""
    return sorted(folder + '/' + name for name in os.listdir(folder)
                  if keep(name) and os.path.isfile(os.path.join(folder, name)))


def build(opt, class_paths, class_names, sample_rule, pipeline, images_path):
    """`class_paths`: class id -> sorted image paths; classes without images are dropped, as the
    reference does when it regroups its flat image list."""
    class_paths = {key: paths for key, paths in class_paths.items() if paths}
    if not class_paths:
        raise DatasetError('Dataset folder {} holds no images.'.format(images_path))
    keys = sorted(class_paths)
    train, test = keys[:len(keys) // 2], keys[len(keys) // 2:]
    train_names = {key: class_names[key] for key in train}
    val_dict, val_names = None, None
    if opt.use_tv_split and not opt.tv_split_by_samples:
        train, val = split_classes(train, opt.tv_split_perc, fold_choice(opt))
        train_dict = {i: class_paths[key] for i, key in enumerate(train)}
        val_dict = {i: class_paths[key] for i, key in enumerate(val)}
        train_names = {i: class_names[key] for i, key in enumerate(train)}
        val_names = {i: class_names[key] for i, key in enumerate(val)}
    elif opt.use_tv_split:
        train_dict, val_dict = {}, {}
        for key in train:
            train_dict[key], val_dict[key] = split_samples(class_paths[key], opt.tv_split_perc, sample_rule,
                                                                 fold_choice(opt))
        val_names = dict(train_names)
    else:
        train_dict = {key: class_paths[key] for key in train}
    test_dict = {key: class_paths[key] for key in test}
    conversions = {'training': train_names, 'validation': val_names,
                   'testing': {key: class_names[key] for key in test}}
    return build_dataset_dict(opt, train_dict, val_dict, test_dict, conversions, pipeline)
