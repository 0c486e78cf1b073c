"""Stanford Online Products: `images/<category>_final/<product>_<view>.JPG` listed by
`Info_Files/Ebay_train.txt` and `Ebay_test.txt`, as in the SOP release.

Labels are `class_id - 1` (test labels are not re-based to 0); the super classes (`super_class_id - 1`)
keep their grouping for `super_evaluation`. A class-wise validation split numbers its classes with two
running counters from 0 (project decision: the reference's labels start at -1, which breaks label-indexed losses).
"""
from datasets.dataset_dict import build_dataset_dict
from datasets.errors import DatasetError, require_file, require_folder
from datasets.tv_split import first_positions, fold_choice, split_classes, split_samples
from datasets.image_transforms import benchmark_pipeline

LAYOUT = ('<source>/online_products/images/<category>_final/<product id>_<view>.JPG and '
          '<source>/online_products/Info_Files/Ebay_train.txt, Ebay_test.txt '
          '(header "image_id class_id super_class_id path")')
COLUMNS = ('class_id', 'super_class_id', 'path')


def read_info_file(path):
    """Rows (class_id, super_class_id, path) in file order; columns are looked up by header name."""
    require_file(path, LAYOUT)
    with open(path) as handle:
        lines = [line.split() for line in handle if line.strip()]
    if not lines or any(column not in lines[0] for column in COLUMNS):
        raise DatasetError('{} has no header with the columns {}; expected layout: {}'
                           .format(path, ', '.join(COLUMNS), LAYOUT))
    positions = [lines[0].index(column) for column in COLUMNS]
    try:
        return [(int(row[positions[0]]), int(row[positions[1]]), row[positions[2]]) for row in lines[1:]]
    except (ValueError, IndexError):
        raise DatasetError('{} has a malformed row; expected layout: {}'.format(path, LAYOUT)) from None


def product_names(class_dict):
    """Class name = product id, the part of its first image's file name before the first '_'."""
    return {key: paths[0].split('/')[-1].split('_')[0] for key, paths in class_dict.items() if paths}


def give(opt, data_path):
    images_path = data_path + '/images'
    require_folder(images_path, LAYOUT)
    training_rows = read_info_file(data_path + '/Info_Files/Ebay_train.txt')
    test_rows = read_info_file(data_path + '/Info_Files/Ebay_test.txt')

    # super id -> class id -> paths, all in first-appearance / file order.
    super_dict = {}
    for class_id, super_id, path in training_rows:
        super_dict.setdefault(super_id, {}).setdefault(class_id, []).append(images_path + '/' + path)

    if opt.use_tv_split and not opt.tv_split_by_samples:
        train_groups, val_groups = {}, {}
        train_count, val_count = 0, 0
        for super_id, classes in super_dict.items():
            train_ids, val_ids = split_classes(sorted(classes), opt.tv_split_perc, fold_choice(opt))
            train_groups[super_id] = {train_count + i: classes[key] for i, key in enumerate(train_ids)}
            val_groups[super_id] = {val_count + i: classes[key] for i, key in enumerate(val_ids)}
            train_count += len(train_ids)
            val_count += len(val_ids)
    elif opt.use_tv_split:
        train_groups, val_groups = {}, {}
        for super_id, classes in super_dict.items():
            train_groups[super_id], val_groups[super_id] = {}, {}
            for key in sorted(classes):
                train_groups[super_id][key - 1], val_groups[super_id][key - 1] = split_samples(
                    classes[key], opt.tv_split_perc, first_positions, fold_choice(opt))
    else:
        train_groups = {super_id: {key - 1: paths for key, paths in classes.items()}
                        for super_id, classes in super_dict.items()}
        val_groups = None

    train_dict = {key: paths for classes in train_groups.values() for key, paths in classes.items()}
    super_train_dict = {super_id - 1: [path for paths in classes.values() for path in paths]
                        for super_id, classes in train_groups.items()}
    super_conversion = {super_id - 1: next(iter(super_dict[super_id].values()))[0].split('/')[-2]
                        for super_id in train_groups}
    val_dict = None
    if val_groups is not None:
        val_dict = {key: paths for classes in val_groups.values() for key, paths in classes.items()}

    test_dict = {}
    for class_id, _, path in test_rows:
        test_dict.setdefault(class_id - 1, []).append(images_path + '/' + path)

    conversions = {'training': product_names(train_dict), 'testing': product_names(test_dict),
                   'validation': None if val_dict is None else product_names(val_dict)}
    return build_dataset_dict(opt, train_dict, val_dict, test_dict, conversions, benchmark_pipeline,
                              super_dict=super_train_dict, super_conversion=super_conversion)
