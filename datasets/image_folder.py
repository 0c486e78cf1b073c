"""`--dataset folder --source_path <dir>`: any `<dir>/<class>/<images>` tree (CUB's and CARS' layout without
their naming rules).

Classes are the sub-folders, in sorted order (numerically when every name is an integer, else as text);
a class's name is its folder's name. Images are the visible files with an extension PIL decodes (a
README or .DS_Store beside them is skipped), sorted by name. Split zero-shot as CUB is: the first ⌊K/2⌋
classes train, the rest test (datasets.class_folders, whose `--use_tv_split` rules apply too, CUB's
evenly spaced positions for a split by samples). Every image's header is read at start-up.
"""
import os

from datasets import class_folders
from datasets.errors import DatasetError, require_folder
from datasets.image_check import image_problem, is_image_name
from datasets.image_transforms import benchmark_pipeline
from datasets.tv_split import evenly_spaced_positions

LAYOUT = '<source_path>/<class name>/<image files>, one sub-folder per class, at least four classes'


def class_order(names):
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def visible(name):
    return not name.startswith('.')


def checked_images(folder):
    """Sorted image paths of one class folder; a file that is not a readable image stops the run."""
    paths = class_folders.list_files(folder, is_image_name)
    for path in paths:
        problem = image_problem(path)
        if problem is not None:
            raise DatasetError('Image {} {}'.format(path, problem))
    return paths


def check_can_rank(data_path, part, keys, class_paths, n_classes):
    """Recall@k and mAP need two classes and a class with two images in each part."""
    if len(keys) >= 2 and max(len(class_paths[key]) for key in keys) >= 2:
        return
    problem = '{} class{}'.format(len(keys), '' if len(keys) == 1 else 'es') if len(keys) < 2 else \
        'no class with two images'
    raise DatasetError('Dataset folder {}: the {} classes ({} of the {} sorted classes with images) cannot rank '
                       '({}); expected layout: {}'.format(data_path, part, 'first half' if part == 'training' else
                                                          'second half', n_classes, problem, LAYOUT))


def give(opt, data_path):
    require_folder(data_path, LAYOUT)
    folders = class_order(class_folders.list_folders(data_path, visible))
    class_paths = {i: checked_images(os.path.join(data_path, name)) for i, name in enumerate(folders)}
    class_names = dict(enumerate(folders))
    kept = sorted(key for key, paths in class_paths.items() if paths)
    cut = len(kept) // 2
    for part, keys in (('training', kept[:cut]), ('test', kept[cut:])):
        check_can_rank(data_path, part, keys, class_paths, len(kept))
    return class_folders.build(opt, class_paths, class_names, evenly_spaced_positions, benchmark_pipeline, data_path)
