"""CUB-200-2011: `images/NNN.<Species>/<files>`; class id = NNN - 1, name = text after the last '.';
anything containing '._' (macOS resource forks) is ignored, as the reference does."""
from datasets import class_folders
from datasets.errors import DatasetError, require_folder
from datasets.image_transforms import benchmark_pipeline
from datasets.tv_split import evenly_spaced_positions

LAYOUT = '<source>/cub200/images/<NNN.Species_Name>/<image files>, e.g. images/001.Black_footed_Albatross/'


def _not_resource_fork(name):
    return '._' not in name


def class_number(folder):
    try:
        return int(folder.split('.')[0])
    except ValueError:
        raise DatasetError('CUB200 class folder {!r} is not named NNN.<Species_Name>; expected layout: {}'
                           .format(folder, LAYOUT)) from None


def give(opt, data_path):
    images_path = data_path + '/images'
    require_folder(images_path, LAYOUT)
    folders = sorted(class_folders.list_folders(images_path, _not_resource_fork), key=class_number)
    class_paths = {class_number(folder) - 1: class_folders.list_files(images_path + '/' + folder, _not_resource_fork)
                   for folder in folders}
    class_names = {class_number(folder) - 1: folder.split('.')[-1] for folder in folders}
    return class_folders.build(opt, class_paths, class_names, evenly_spaced_positions, benchmark_pipeline,
                              images_path)
