"""iNaturalist 2018 in the metric-learning split of Smooth-AP (Brown et al., ECCV 2020), reused by the
Recall@k surrogate loss (Patel et al., CVPR 2022): 5 690 training classes (325 846 images) and 2 452 unseen
test classes (136 093 images), given as two image lists.

Layout: the challenge's `train_val2018/<supercategory>/<class id>/<file>.jpg` under `<source>/inaturalist/`,
and the lists `Inaturalist_train_set1.txt` / `Inaturalist_test_set1.txt` (the release's names, read from
`Inat_dataset_splits/` by the Smooth-AP and Recall@k-surrogate code) in `Inat_dataset_splits/` or beside the
images, one image path relative to `<source>/inaturalist/` per line. The spelling `iNaturalist_..._set1.txt`
is accepted too. The class is the
class-id folder; labels number each part's classes from 0 in ascending class id, a label's name is
`<supercategory>/<class id>`. The test split is evaluated as one set (every image queries the rest), with
the customary R@1/4/16/32. A class-wise validation split takes the last training classes, re-keyed from 0;
by samples it keeps the first ⌊n·p⌋ listed images of every class.
"""
import os

from datasets.dataset_dict import build_dataset_dict
from datasets.errors import DatasetError, require_folder
from datasets.image_transforms import benchmark_pipeline
from datasets.list_files import malformed, numbered_lines
from datasets.tv_split import fold_choice, split_labelled_classes

LAYOUT = ('<source>/inaturalist/train_val2018/<supercategory>/<class id>/<file>.jpg and the Smooth-AP split lists '
          '<source>/inaturalist/Inat_dataset_splits/Inaturalist_train_set1.txt, Inaturalist_test_set1.txt (or beside '
          'train_val2018/), '
          'one line "train_val2018/<supercategory>/<class id>/<file>.jpg" per image')
LIST_FOLDERS = ('Inat_dataset_splits', '')
LISTS = ('Inaturalist_train_set1.txt', 'Inaturalist_test_set1.txt')   # the release's names


def spellings(name):
    """The release's name, then the `iNaturalist_` spelling this loader once required."""
    return (name, 'iN' + name[2:])


def list_file(data_path, name):
    for folder in LIST_FOLDERS:
        for spelling in spellings(name):
            path = os.path.join(data_path, folder, spelling)
            if os.path.isfile(path):
                return path
    raise DatasetError('Dataset file {} not found (nor {}, nor spelt {}); expected layout: {}'.format(
        os.path.join(data_path, LIST_FOLDERS[0], name), os.path.join(data_path, name), spellings(name)[1], LAYOUT))


def read_list(path):
    """[(relative image path, supercategory, class id)] in file order; a bad line is reported by its number."""
    rows = []
    for number, fields in numbered_lines(path):
        parts = fields[0].strip('/').split('/') if len(fields) == 1 else []
        if len(parts) < 4 or not parts[-2].isdigit():
            raise malformed(path, number, 'expected one path "<images folder>/<supercategory>/<class id>/<file>", '
                            'got {!r}'.format(' '.join(fields)), LAYOUT)
        rows.append(('/'.join(parts), parts[-3], int(parts[-2])))
    if not rows:
        raise DatasetError('{} lists no images; expected layout: {}'.format(path, LAYOUT))
    return rows


def classes_to_labels(rows, data_path):
    """label (0.. in ascending class id) -> image paths in list order, and label -> '<supercategory>/<id>'."""
    by_class, names = {}, {}
    for path, supercategory, class_id in rows:
        by_class.setdefault(class_id, []).append(data_path + '/' + path)
        names[class_id] = '{}/{}'.format(supercategory, class_id)
    ids = sorted(by_class)
    return {label: by_class[c] for label, c in enumerate(ids)}, {label: names[c] for label, c in enumerate(ids)}


def images_folder(rows):
    return rows[0][0].split('/')[0]


def give(opt, data_path):
    training_rows = read_list(list_file(data_path, LISTS[0]))
    test_rows = read_list(list_file(data_path, LISTS[1]))
    require_folder(os.path.join(data_path, images_folder(training_rows)), LAYOUT)
    train_dict, train_names = classes_to_labels(training_rows, data_path)
    train_dict, train_names, val_dict, val_names = split_labelled_classes(
        train_dict, train_names, opt.use_tv_split, opt.tv_split_by_samples, opt.tv_split_perc,
        folds=fold_choice(opt))
    test_dict, test_names = classes_to_labels(test_rows, data_path)
    conversions = {'training': train_names, 'validation': val_names, 'testing': test_names}
    return build_dataset_dict(opt, train_dict, val_dict, test_dict, conversions, benchmark_pipeline)
