"""CARS196: `images/<car model>/<files>`; class id = position of the folder name in string-sorted
order, nothing filtered, as the reference does."""
from datasets import class_folders
from datasets.errors import require_folder
from datasets.image_transforms import benchmark_pipeline
from datasets.tv_split import random_positions

LAYOUT = '<source>/cars196/images/<car model>/<image files>, e.g. images/AM General Hummer SUV 2000/'


def give(opt, data_path):
    images_path = data_path + '/images'
    require_folder(images_path, LAYOUT)
    folders = sorted(class_folders.list_folders(images_path))
    class_paths = {i: class_folders.list_files(images_path + '/' + folder) for i, folder in enumerate(folders)}
    class_names = dict(enumerate(folders))
    return class_folders.build(opt, class_paths, class_names, random_positions, benchmark_pipeline, images_path)
