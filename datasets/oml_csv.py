"""`--dataset csv --source_path <file.csv>`: a dataset described by one CSV in open-metric-learning's format.

Columns (OML's `oml/const.py`): `label`, `path`, `split` (`train` or `validation`), `is_query`, `is_gallery`,
optional `category` (read, not used: the metrics are computed over the whole split) and optional crop box
`x_1, y_1, x_2, y_2` (integer pixel corners, `image[y_1:y_2, x_1:x_2]`; empty for a row without a box).
Other columns are ignored. Paths are relative to the CSV's folder (OML's `dataset_root` holding its
dataframe) or absolute.

`train` rows train and `validation` rows form the test split. Validation rows evaluate query against
gallery (the In-Shop protocol) when their `is_query` / `is_gallery` flags split them into two disjoint
sets; every row both query and gallery (OML's layout of CUB, Cars, SOP), or both flags empty on every
validation row, evaluates all against all, as the benchmarks do. Labels may be any non-empty text; each
part numbers its labels from 0 in sorted order (numeric when every label is an integer) and a label's
name is its text. `--use_tv_split` splits the train rows as it splits In-Shop's and iNaturalist's
(datasets.tv_split.split_labelled_classes).

Every row is checked before anything is built: a bad row is one line naming the CSV and its line.
"""
import csv
import dataclasses
import os
import typing

from datasets.boxes import BoxedPath
from datasets.dataset_dict import build_dataset_dict
from datasets.errors import DatasetError
from datasets.image_check import image_size
from datasets.image_transforms import benchmark_pipeline
from datasets.query_gallery import QueryGallery
from datasets.tv_split import fold_choice, split_labelled_classes

COLUMNS = ('label', 'path', 'split', 'is_query', 'is_gallery')
BOX_COLUMNS = ('x_1', 'y_1', 'x_2', 'y_2')
SPLITS = ('train', 'validation')
TRUE, FALSE = ('true', '1', '1.0'), ('false', '0', '0.0')
LAYOUT = ("open-metric-learning's CSV: columns label, path, split (train|validation), is_query, is_gallery "
          "(True/False on validation rows), optional category and x_1, y_1, x_2, y_2; paths relative to the "
          "CSV's folder or absolute")


@dataclasses.dataclass
class Row:
    line: int
    label: str
    path: str                           # resolved; a BoxedPath when the row has a box
    split: str
    roles: typing.Optional[tuple]       # (is_query, is_gallery) of a validation row, None when both are empty


def bad_row(csv_path, line, what):
    return DatasetError('{}, line {}: {}'.format(csv_path, line, what))


def flag(csv_path, line, column, text):
    """True/False/None (empty) of an is_query / is_gallery cell (pandas writes True/False, also 1/0)."""
    text = text.strip()
    if not text or text.lower() == 'nan':
        return None
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise bad_row(csv_path, line, '{} {!r} is not True or False'.format(column, text))


def integer(csv_path, line, column, text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or value != int(value):
        raise bad_row(csv_path, line, '{} {!r} is not an integer pixel coordinate'.format(column, text))
    return int(value)


def read_box(csv_path, line, record, has_boxes):
    """(x_1, y_1, x_2, y_2) or None; all four cells empty means no box."""
    if not has_boxes:
        return None
    cells = [(record.get(column) or '').strip() for column in BOX_COLUMNS]
    if not any(cells) or all(cell.lower() == 'nan' for cell in cells):
        return None
    if not all(cells):
        raise bad_row(csv_path, line, 'the box x_1, y_1, x_2, y_2 is partly empty ({})'.format(', '.join(cells)))
    x_1, y_1, x_2, y_2 = (integer(csv_path, line, column, cell) for column, cell in zip(BOX_COLUMNS, cells))
    if not (0 <= x_1 < x_2 and 0 <= y_1 < y_2):
        raise bad_row(csv_path, line, 'the box ({}, {}, {}, {}) needs 0 <= x_1 < x_2 and 0 <= y_1 < y_2'
                      .format(x_1, y_1, x_2, y_2))
    return x_1, y_1, x_2, y_2


def read_rows(csv_path):
    """Every row, checked: columns, split value, label, image (exists, readable, box inside it), flags."""
    root = os.path.dirname(os.path.abspath(csv_path))
    try:
        with open(csv_path, newline='', encoding='utf-8-sig') as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in COLUMNS if name not in columns]
            if missing:
                raise bad_row(csv_path, 1, 'missing column{} {} (header: {}); expected {}'.format(
                    's' if len(missing) > 1 else '', ', '.join(missing), ', '.join(columns) or 'none', LAYOUT))
            present_boxes = [name for name in BOX_COLUMNS if name in columns]
            if present_boxes and len(present_boxes) < 4:
                raise bad_row(csv_path, 1, 'a box needs all of x_1, y_1, x_2, y_2 (found {})'.format(
                    ', '.join(present_boxes)))
            reader.fieldnames = columns
            sizes, rows = {}, []
            for record in reader:
                rows.append(read_row(csv_path, reader.line_num, record, root, bool(present_boxes), sizes))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError('--source_path {}: cannot read the CSV ({})'.format(csv_path, error)) from None
    if not rows:
        raise DatasetError('{} holds no rows; expected {}'.format(csv_path, LAYOUT))
    return rows


def read_row(csv_path, line, record, root, has_boxes, sizes):
    split = (record.get('split') or '').strip()
    if split not in SPLITS:
        raise bad_row(csv_path, line, 'split {!r} is not one of {}'.format(split, ', '.join(SPLITS)))
    label = (record.get('label') or '').strip()
    if not label:
        raise bad_row(csv_path, line, 'empty label')
    name = (record.get('path') or '').strip()
    if not name:
        raise bad_row(csv_path, line, 'empty path')
    path = os.path.join(root, name)
    if path not in sizes:
        sizes[path] = image_size(path)
    size, problem = sizes[path]
    if problem is not None:
        raise bad_row(csv_path, line, 'image {} {}'.format(path, problem))
    box = read_box(csv_path, line, record, has_boxes)
    if box is not None:
        if box[2] > size[0] or box[3] > size[1]:
            raise bad_row(csv_path, line, 'the box {} reaches outside the {}x{} image {}'.format(
                box, size[0], size[1], path))
        path = BoxedPath(path, box)
    roles = None
    if split == 'validation':
        is_query = flag(csv_path, line, 'is_query', record.get('is_query') or '')
        is_gallery = flag(csv_path, line, 'is_gallery', record.get('is_gallery') or '')
        if (is_query is None) != (is_gallery is None):
            raise bad_row(csv_path, line, 'give both is_query and is_gallery, or leave both empty')
        if is_query is not None:
            if not (is_query or is_gallery):
                raise bad_row(csv_path, line, 'a validation row must be a query, a gallery image or both')
            roles = (is_query, is_gallery)
    return Row(line, label, path, split, roles)


def label_order(labels):
    """Sorted distinct labels: numerically when all are integers, else as text."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def by_label(rows):
    """(label -> rows in file order, label -> name), labels numbered from 0 in `label_order`."""
    grouped = {}
    for row in rows:
        grouped.setdefault(row.label, []).append(row)
    names = label_order(grouped)
    return {i: grouped[name] for i, name in enumerate(names)}, dict(enumerate(names))


def evaluated_query_against_gallery(csv_path, rows):
    """False for all against all, True for disjoint query and gallery sets; anything else is an error."""
    first = rows[0]
    for row in rows:
        if (row.roles is None) != (first.roles is None):
            raise bad_row(csv_path, row.line, 'is_query / is_gallery {} here but {} on line {}: give them on every '
                          'validation row or on none'.format('empty' if row.roles is None else 'given',
                                                            'empty' if first.roles is None else 'given', first.line))
    if first.roles is None or all(row.roles == (True, True) for row in rows):
        return False
    both = [row for row in rows if row.roles == (True, True)]
    if both:
        raise bad_row(csv_path, both[0].line, 'a row that is both query and gallery beside rows that are only one '
                      'of them: evaluate all against all (every row both) or disjoint query and gallery sets')
    return True


def check_can_rank(csv_path, part, grouped):
    """Recall@k and mAP need two classes and a class with two images (one-set protocol)."""
    n_classes = len(grouped)
    if n_classes >= 2 and max(len(rows) for rows in grouped.values()) >= 2:
        return
    raise DatasetError('{}: the {} rows cannot rank ({}); they need at least two labels and a label with two '
                       'images'.format(csv_path, part, '{} label{}'.format(n_classes, '' if n_classes == 1 else 's')
                                       if n_classes < 2 else 'no label with two images'))


def check_queries_can_rank(csv_path, grouped):
    """Query against gallery: the gallery holds two labels and some query has a gallery image of its label."""
    n_gallery_labels = sum(any(row.roles[1] for row in rows) for rows in grouped.values())
    if n_gallery_labels < 2:
        raise DatasetError('{}: the validation gallery holds {} label{}; ranking needs at least two'.format(
            csv_path, n_gallery_labels, '' if n_gallery_labels == 1 else 's'))
    for rows in grouped.values():
        if any(row.roles[0] for row in rows) and any(row.roles[1] for row in rows):
            return
    raise DatasetError('{}: no query of the validation rows has a gallery image of its label, so nothing can be '
                       'retrieved'.format(csv_path))


def split_rows(csv_path):
    """(train rows, validation rows, query/gallery?) of a checked CSV."""
    rows = read_rows(csv_path)
    parts = {split: [row for row in rows if row.split == split] for split in SPLITS}
    for split, part in parts.items():
        if not part:
            raise DatasetError('{} has no {} rows; expected {}'.format(csv_path, split, LAYOUT))
    return parts['train'], parts['validation'], evaluated_query_against_gallery(csv_path, parts['validation'])


def give(opt, csv_path):
    train_rows, val_rows, query_gallery = split_rows(csv_path)
    train_grouped, train_names = by_label(train_rows)
    test_grouped, test_names = by_label(val_rows)
    check_can_rank(csv_path, 'train', train_grouped)
    if query_gallery:
        check_queries_can_rank(csv_path, test_grouped)
    else:
        check_can_rank(csv_path, 'validation', test_grouped)
    paths = lambda grouped: {key: [row.path for row in rows] for key, rows in grouped.items()}
    train_dict, train_names, val_dict, val_names = split_labelled_classes(
        paths(train_grouped), train_names, opt.use_tv_split, opt.tv_split_by_samples, opt.tv_split_perc,
        folds=fold_choice(opt))
    conversions = {'training': train_names, 'validation': val_names, 'testing': test_names}
    splits = build_dataset_dict(opt, train_dict, val_dict, paths(test_grouped), conversions, benchmark_pipeline)
    if query_gallery:  # rows in the dataset's global index order: sorted labels, file order within one
        ordered = [row for key in sorted(test_grouped) for row in test_grouped[key]]
        splits['testing'].query_gallery = QueryGallery([row.roles[0] for row in ordered],
                                                       [row.roles[1] for row in ordered])
    return splits
