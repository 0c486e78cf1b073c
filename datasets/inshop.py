"""In-Shop Clothes Retrieval (DeepFashion): `img/<gender>/<category>/id_<item>/<view>.jpg` listed by
`list_eval_partition.txt`, as the official archive unpacks (the file may also sit in `Eval/`).

The partition file holds the number of rows on line 1, the header `image_name item_id evaluation_status`
on line 2, then one row per image with status train, query or gallery. The training items (3 997 in the
release) train; the test split is every query and gallery image (3 985 items), evaluated query against
gallery. Labels number the items of each part from 0 in sorted item-id order; a label's name is its item
id. A class-wise validation split (--use_tv_split) takes the last training items and re-keys both parts
from 0; by samples it keeps the first ⌊n·p⌋ images of every item, in file order.
"""
import os

from datasets.dataset_dict import build_dataset_dict
from datasets.errors import DatasetError, require_folder
from datasets.image_transforms import benchmark_pipeline
from datasets.list_files import malformed, numbered_lines
from datasets.tv_split import fold_choice, split_labelled_classes

LAYOUT = ('<source>/inshop/img/<gender>/<category>/id_<item>/<view>.jpg and <source>/inshop/list_eval_partition.txt '
          '(or Eval/list_eval_partition.txt): line 1 the number of rows, line 2 the header '
          '"image_name item_id evaluation_status", then rows "img/... id_<item> train|query|gallery"')
PARTITION_FILES = ('list_eval_partition.txt', 'Eval/list_eval_partition.txt')
HEADER = ('image_name', 'item_id', 'evaluation_status')
STATUSES = ('train', 'query', 'gallery')


def partition_file(data_path):
    for name in PARTITION_FILES:
        path = os.path.join(data_path, name)
        if os.path.isfile(path):
            return path
    raise DatasetError('Dataset file {} not found (nor {}); expected layout: {}'.format(
        os.path.join(data_path, PARTITION_FILES[0]), os.path.join(data_path, PARTITION_FILES[1]), LAYOUT))


def read_partition(path):
    """[(image_name, item_id, status)] in file order; any malformed line is reported by its number."""
    lines = numbered_lines(path)
    if not lines:
        raise DatasetError('{} is empty; expected layout: {}'.format(path, LAYOUT))
    number, fields = lines[0]
    if len(fields) != 1 or not fields[0].isdigit():
        raise malformed(path, number, 'expected the number of rows, got {!r}'.format(' '.join(fields)), LAYOUT)
    expected_rows = int(fields[0])
    if len(lines) < 2 or tuple(lines[1][1]) != HEADER:
        number = lines[1][0] if len(lines) > 1 else number + 1
        raise malformed(path, number, 'expected the header "{}"'.format(' '.join(HEADER)), LAYOUT)
    rows = []
    for number, fields in lines[2:]:
        if len(fields) != 3:
            raise malformed(path, number, 'expected 3 fields "image_name item_id evaluation_status", got {}'
                            .format(len(fields)), LAYOUT)
        if fields[2] not in STATUSES:
            raise malformed(path, number, 'evaluation_status {!r} is not one of {}'.format(
                fields[2], ', '.join(STATUSES)), LAYOUT)
        rows.append(tuple(fields))
    if len(rows) != expected_rows:
        raise malformed(path, lines[0][0], 'announces {} rows, the file holds {}'.format(expected_rows, len(rows)),
                        LAYOUT)
    return rows


def items_to_labels(rows):
    """label (0.. in sorted item-id order) -> image paths in file order, and label -> item id."""
    by_item = {}
    for path, item in rows:
        by_item.setdefault(item, []).append(path)
    items = sorted(by_item)
    return {label: by_item[item] for label, item in enumerate(items)}, dict(enumerate(items))


def give(opt, data_path):
    require_folder(data_path + '/img', LAYOUT)
    rows = read_partition(partition_file(data_path))
    image = lambda name: data_path + '/' + name
    training_rows = [(image(name), item) for name, item, status in rows if status == 'train']
    test_rows = [(image(name), item) for name, item, status in rows if status != 'train']
    if not training_rows or not test_rows:
        raise DatasetError('{} lists no {} images; expected layout: {}'.format(
            partition_file(data_path), 'train' if not training_rows else 'query or gallery', LAYOUT))
    train_dict, train_names = items_to_labels(training_rows)
    train_dict, train_names, val_dict, val_names = split_labelled_classes(
        train_dict, train_names, opt.use_tv_split, opt.tv_split_by_samples, opt.tv_split_perc,
        folds=fold_choice(opt))
    test_dict, test_names = items_to_labels(test_rows)
    query_paths = [image(name) for name, _, status in rows if status == 'query']
    gallery_paths = [image(name) for name, _, status in rows if status == 'gallery']
    conversions = {'training': train_names, 'validation': val_names, 'testing': test_names}
    return build_dataset_dict(opt, train_dict, val_dict, test_dict, conversions, benchmark_pipeline,
                              test_roles=(query_paths, gallery_paths))
