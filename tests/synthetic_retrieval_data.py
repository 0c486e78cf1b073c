"""Small synthetic image trees in the on-disk layouts of In-Shop Clothes (the official archive) and
iNaturalist 2018 with the Smooth-AP split lists, for the dataset and end-to-end tests.

Images come from `synthetic_data.class_image` (a colour and stripe pattern per class), so a tiny run
can learn them. Each `make_*` returns the dataset folder; pass its parent as `--source_path`.
"""
import os

from synthetic_data import _save, class_image

GENDERS = ('WOMEN', 'MEN')
CATEGORIES = ('Dresses', 'Denim', 'Tees_Tanks')
SUPERCATEGORIES = ('Plantae', 'Aves', 'Insecta')


def inshop_rows(n_train_items=6, n_test_items=4, train_per_item=3, query_per_item=2, gallery_per_item=2):
    """(image_name, item_id, status, class index) rows in file order: training items first, then for each
    test item its query and its gallery images interleaved, as the release mixes them. The first test
    item has a single gallery image."""
    rows = []
    for c in range(n_train_items + n_test_items):
        item = 'id_{:08d}'.format(2 + 7 * c)
        folder = 'img/{}/{}/{}'.format(GENDERS[c % 2], CATEGORIES[c % 3], item)
        if c < n_train_items:
            statuses = ['train'] * train_per_item
        else:
            n_gallery = 1 if c == n_train_items else gallery_per_item
            statuses = [status for pair in zip(['query'] * query_per_item + [None] * n_gallery,
                                               ['gallery'] * n_gallery + [None] * query_per_item)
                        for status in pair if status][:query_per_item + n_gallery]
        for s, status in enumerate(statuses):
            rows.append(('{}/{:02d}_{}_front.jpg'.format(folder, s + 1, s + 1), item, status, c))
    return rows


def write_partition(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write('{}\nimage_name item_id evaluation_status\n'.format(len(rows)))
        handle.write(''.join('{}  {}  {}\n'.format(name, item, status) for name, item, status, *_ in rows))


def make_inshop(root, size=32, in_eval_folder=False, look_alike_queries=False, **counts):
    """`<root>/inshop/img/<gender>/<category>/id_<item>/<nn>_<n>_front.jpg` and `list_eval_partition.txt`
    (in `Eval/` with `in_eval_folder`). With `look_alike_queries` every other query image shows the
    pattern of the previous item, so that retrieval makes mistakes."""
    folder = os.path.join(root, 'inshop')
    rows = inshop_rows(**counts)
    queries_seen = 0
    for name, _, status, c in rows:
        pattern = c
        if status == 'query':
            queries_seen += 1
            pattern = c - 1 if look_alike_queries and queries_seen % 2 == 0 else c
        _save(class_image(pattern, int(name.split('/')[-1][:2]), size), os.path.join(folder, name))
    write_partition(os.path.join(folder, 'Eval' if in_eval_folder else '', 'list_eval_partition.txt'), rows)
    return folder


def inaturalist_rows(n_train_classes=6, n_test_classes=4, per_class=3):
    """(list name, relative path, class index) with class ids that are not contiguous or sorted by split."""
    rows = []
    for c in range(n_train_classes + n_test_classes):
        class_id = 5000 - 37 * c if c % 2 else 100 + 13 * c
        part = 'Inaturalist_train_set1.txt' if c < n_train_classes else 'Inaturalist_test_set1.txt'
        for s in range(per_class):
            rows.append((part, 'train_val2018/{}/{}/{:032x}.jpg'.format(SUPERCATEGORIES[c % 3], class_id,
                                                                       1000 * c + s), c))
    return rows


def make_inaturalist(root, size=32, lists_folder='', list_prefix='Inaturalist', **counts):
    """`<root>/inaturalist/train_val2018/<supercategory>/<class id>/<hex>.jpg` and the two split lists, named
    `<list_prefix>_{train,test}_set1.txt` (the release's `Inaturalist`, or the `iNaturalist` spelling)."""
    folder = os.path.join(root, 'inaturalist')
    rows = inaturalist_rows(**counts)
    os.makedirs(os.path.join(folder, lists_folder), exist_ok=True)
    for part in ('Inaturalist_train_set1.txt', 'Inaturalist_test_set1.txt'):
        with open(os.path.join(folder, lists_folder, part.replace('Inaturalist', list_prefix)), 'w') as handle:
            handle.write(''.join(path + '\n' for name, path, _ in rows if name == part))
    for s, (_, path, c) in enumerate(rows):
        _save(class_image(c, s, size), os.path.join(folder, path))
    return folder
