"""A user's own data: `--dataset csv` (open-metric-learning's CSV) and `--dataset folder` (<class>/<images>).

End to end on the digits written by `datasets.write_digits`: one epoch of the LSD trainer, then evaluate.py
on the run folder; the metrics the trainer logged equal brute force on the exported embeddings (query
against gallery for a CSV with disjoint flags, all against all otherwise). Then each bad input stops the
trainer with one line naming the file and row (or the path) before any run folder exists. The backbone is
the tiny network, so that a run takes seconds.
"""
import csv
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import architectures
import datasets
import parameters
from conftest import logged_test_metrics, run_trainer_in_process
from datasets import write_digits
from datasets.boxes import BoxedPath
from datasets.decoding import decode_rgb, load_pil_rgb
from evaluation import checkpoint_eval
from metrics_bruteforce import map_at_r, recall_at_k
from query_gallery_bruteforce import brute_force
from tiny_backbone import TinyBackbone
from training import loop

METRICS = ['e_recall@1', 'e_recall@2', 'e_recall@4', 'mAP@R']
PER_CLASS = 6


def argv(dataset, source, save_path, *extra):
    return ['--dataset', dataset, '--source_path', source, '--save_path', save_path, '--savename', 'run',
            '--arch', 'resnet18_normalize', '--not_pretrained', '--loss', 'margin_lsd', '--batch_mining', 'distance',
            '--kd_alpha', '50', '--kd_tau', '1', '--n_epochs', '1', '--bs', '8', '--samples_per_class', '2',
            '--embed_dim', '8', '--kernels', '0', '--seed', '0', '--no_train_metrics', '--no_plots',
            '--evaluation_metrics'] + METRICS + ['--storage_metrics', 'e_recall@1'] + list(extra)


@pytest.fixture(scope='module')
def tiny_network():
    patch = pytest.MonkeyPatch()
    patch.setattr(architectures, 'select', lambda arch, opt: TinyBackbone(opt.embed_dim))
    yield
    patch.undo()


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    """{name: source path} of the digits as a query/gallery CSV, an all-against-all CSV and a folder."""
    root = tmp_path_factory.mktemp('own_data')
    return {'csv_query_gallery': write_digits.write(str(root / 'qg'), True, PER_CLASS, query_gallery=True),
            'csv_all': write_digits.write(str(root / 'all'), True, PER_CLASS, box=True),
            'folder': write_digits.write(str(root / 'folder'), False, PER_CLASS)}


@pytest.fixture(scope='module', params=['csv_query_gallery', 'csv_all', 'folder'])
def trained(request, written, tiny_network, tmp_path_factory):
    """(run folder, evaluate.py's result, exported arrays) of one epoch on each layout."""
    name = request.param
    root = str(tmp_path_factory.mktemp(name))
    save_path = os.path.join(root, 'runs')
    dataset = 'folder' if name == 'folder' else 'csv'
    loop.main(argv(dataset, written[name], save_path), lsd_trainer=True)
    run_folder = os.path.join(save_path, dataset, 'run')
    result = checkpoint_eval.main(['--checkpoint', run_folder, '--export_embeddings', root + '/emb.npz',
                                   '--progress', 'off'])
    return name, run_folder, result, dict(np.load(root + '/emb.npz'))


def test_logged_metrics_equal_brute_force_on_the_exported_embeddings(trained):
    name, run_folder, result, exported = trained
    logged = logged_test_metrics(run_folder)
    assert result['metrics']['discriminative'] == {metric: logged[metric] for metric in METRICS}
    if name == 'csv_query_gallery':
        assert str(exported['protocol']) == 'query_gallery'
        n_query, n_gallery = len(exported['query_labels']), len(exported['gallery_labels'])
        assert n_query == n_gallery == 5 * PER_CLASS // 2
        assert all('/images/' in path for path in exported['query_image_paths'])
        features = np.concatenate([exported['query_features'], exported['gallery_features']])
        labels = np.concatenate([exported['query_labels'], exported['gallery_labels']]).tolist()
        queries, gallery = list(range(n_query)), list(range(n_query, n_query + n_gallery))
        for metric in METRICS:
            assert logged[metric] == pytest.approx(brute_force(features, labels, queries, gallery, metric),
                                                   abs=1e-6), metric
        return
    assert str(exported['protocol']) == 'one_set'
    features, labels = exported['features'], exported['labels'].tolist()
    assert len(labels) == 5 * PER_CLASS   # the folder keeps its class ids (as CUB), a CSV numbers its labels
    assert sorted(set(labels)) == (list(range(5, 10)) if name == 'folder' else list(range(5)))
    for k in (1, 2, 4):
        assert logged['e_recall@{}'.format(k)] == pytest.approx(recall_at_k(features, labels, k), abs=1e-6)
    assert logged['mAP@R'] == pytest.approx(map_at_r(features, labels)[0], abs=1e-6)


# ------------------------------------------------------------------------------------ dataset contents

def options(*extra):
    return parameters.read_arguments(['--kernels', '0', *extra])


def test_csv_labels_roles_and_tv_split(written):
    path = written['csv_query_gallery']
    data = datasets.select('csv', options(), path)
    testing = data['testing']
    assert testing.conversion == {0: '5', 1: '6', 2: '7', 3: '8', 4: '9'}
    table = pd.read_csv(path)
    role = {os.path.join(os.path.dirname(path), row.path): bool(row.is_query)
            for row in table.itertuples() if row.split == 'validation'}
    assert testing.query_gallery.is_query.tolist() == [role[p] for p, _ in testing.image_list]
    assert testing.query_gallery.is_gallery.tolist() == [not role[p] for p, _ in testing.image_list]
    split = datasets.select('csv', options('--use_tv_split', '--tv_split_perc', '0.6'), path)
    assert [split['training'].conversion[k] for k in sorted(split['training'].conversion)] == ['0', '1', '2']
    assert [split['validation'].conversion[k] for k in sorted(split['validation'].conversion)] == ['3', '4']


def test_text_labels_sort_as_text_and_integer_labels_numerically(tmp_path):
    from datasets.oml_csv import label_order
    assert label_order(['10', '9', '2']) == ['2', '9', '10']
    assert label_order(['b', 'a', '10']) == ['10', 'a', 'b']


def test_boxes_crop_in_both_decoders(written):
    path = written['csv_all']
    data = datasets.select('csv', options(), path)
    boxed = data['testing'].image_list[0][0]
    assert isinstance(boxed, BoxedPath) and boxed.box == write_digits.BOX
    with Image.open(str(boxed)) as image:
        full = np.array(image.convert('RGB'))
    x_1, y_1, x_2, y_2 = write_digits.BOX
    assert np.array_equal(np.array(load_pil_rgb(boxed)), full[y_1:y_2, x_1:x_2])
    assert torch.equal(decode_rgb(boxed), torch.from_numpy(full[y_1:y_2, x_1:x_2]).permute(2, 0, 1))
    import pickle
    assert pickle.loads(pickle.dumps(boxed)).box == boxed.box   # DataLoader workers keep the box


def test_folder_splits_sorted_classes_zero_shot(written):
    data = datasets.select('folder', options(), written['folder'])
    assert data['training'].conversion == {i: str(i) for i in range(5)}
    assert data['testing'].conversion == {i: str(i) for i in range(5, 10)}
    assert len(data['testing']) == 5 * PER_CLASS and data['testing'].query_gallery is None


def test_folder_skips_files_that_are_not_images(written, tmp_path):
    import shutil
    folder = str(tmp_path / 'tree')
    shutil.copytree(written['folder'], folder)
    open(os.path.join(folder, '3', 'README.txt'), 'w').write('notes')
    open(os.path.join(folder, '3', '.DS_Store'), 'w').write('')
    data = datasets.select('folder', options(), folder)
    assert len(data['training']) == 5 * PER_CLASS


def test_data_folder_is_the_source_path_for_own_data():
    assert datasets.data_folder('csv', '/d/table.csv') == '/d/table.csv'
    assert datasets.data_folder('folder', '/d/pictures') == '/d/pictures'
    assert datasets.data_folder('cub200', '/d') == '/d/cub200'


# ------------------------------------------------------------------------------------ bad input

def rewritten(path, target, edit):
    """A copy of the CSV at `path` as `target` (beside it, so relative paths still resolve), rows edited."""
    with open(path, newline='') as handle:
        rows = list(csv.reader(handle))
    rows = edit(rows)
    with open(target, 'w', newline='') as handle:
        csv.writer(handle, lineterminator='\n').writerows(rows)
    return target


def stops_before_any_folder(dataset, source, tmp_path):
    save_path = tmp_path / 'runs'
    result = run_trainer_in_process(argv(dataset, str(source), str(save_path)))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(lines) == 1, result.stderr[-2000:]
    assert not save_path.exists()
    return lines[0]


def set_cell(row_index, column, value):
    """Edit row `row_index` (1: the first after the header), or with 'validation' the first validation row."""
    def edit(rows):
        index = row_index if row_index != 'validation' else next(
            i for i, row in enumerate(rows) if row[2] == 'validation')
        rows[index][rows[0].index(column)] = value
        return rows
    return edit


def queries_of_label_5_only(rows):
    """Validation rows: every image of label 5 a query, the gallery images of labels 6 and 7."""
    kept = [rows[0]]
    for row in rows[1:]:
        if row[2] == 'train' or (row[0] in ('6', '7') and row[3] == 'False'):
            kept.append(row)
        elif row[0] == '5':
            kept.append(row[:3] + ['True', 'False'])
    return kept


CSV_CASES = {
    'missing column': (lambda rows: [row[:4] for row in rows], 'line 1: missing column is_gallery'),
    'unknown split': (set_cell(3, 'split', 'test'), "line 4: split 'test' is not one of train, validation"),
    'missing image': (set_cell(2, 'path', 'images/0/none.png'), 'line 3: image {root}/images/0/none.png not found'),
    'empty label': (set_cell(4, 'label', ''), 'line 5: empty label'),
    'bad flag': (set_cell('validation', 'is_query', 'maybe'), "is_query 'maybe' is not True or False"),
    'unrankable validation': (lambda rows: [rows[0]] + [r for r in rows[1:] if r[2] == 'train' or r[0] == '5'],
                              'the validation gallery holds 1 label'),
    'no query can find its label': (queries_of_label_5_only, 'no query of the validation rows has a gallery '
                                                             'image of its label'),
    'mixed roles': (set_cell('validation', 'is_gallery', 'True'), 'a row that is both query and gallery beside rows'),
}


@pytest.mark.parametrize('case', sorted(CSV_CASES))
def test_bad_csv_names_the_file_and_row(case, written, tiny_network, tmp_path):
    edit, expected = CSV_CASES[case]
    source = written['csv_query_gallery']
    target = rewritten(source, os.path.join(os.path.dirname(source), 'case_{}.csv'.format(case.replace(' ', '_'))),
                       edit)
    line = stops_before_any_folder('csv', target, tmp_path)
    assert line.startswith('error: {}'.format(target)), line
    assert expected.format(root=os.path.dirname(source)) in line, line


def test_unreadable_image_and_box_outside_the_image(written, tiny_network, tmp_path):
    root = os.path.dirname(written['csv_all'])
    broken = os.path.join(root, 'images', 'broken.png')
    open(broken, 'wb').write(b'not a png')
    target = rewritten(written['csv_all'], os.path.join(root, 'broken.csv'), set_cell(5, 'path', 'images/broken.png'))
    line = stops_before_any_folder('csv', target, tmp_path)
    assert line.startswith('error: {}, line 6: image {} cannot be read as an image'.format(target, broken)), line
    target = rewritten(written['csv_all'], os.path.join(root, 'outside.csv'), set_cell(2, 'x_2', '9'))
    line = stops_before_any_folder('csv', target, tmp_path)
    assert line.startswith('error: {}, line 3: the box (1, 1, 9, 7) reaches outside the 8x8 image'.format(target))


def test_missing_csv_names_the_flag(tiny_network, tmp_path):
    line = stops_before_any_folder('csv', tmp_path / 'none.csv', tmp_path)
    assert line.startswith('error: --source_path {}: no such CSV file'.format(tmp_path / 'none.csv'))


def test_bad_folder_names_the_path(written, tiny_network, tmp_path):
    import shutil
    folder = tmp_path / 'tree'
    shutil.copytree(written['folder'], str(folder))
    broken = folder / '7' / 'broken.jpg'
    broken.write_bytes(b'')
    line = stops_before_any_folder('folder', folder, tmp_path)
    assert line.startswith('error: Image {} cannot be read as an image'.format(broken)), line
    broken.unlink()
    for digit in range(3, 10):
        shutil.rmtree(str(folder / str(digit)))
    line = stops_before_any_folder('folder', folder, tmp_path)
    assert line.startswith('error: Dataset folder {}: the training classes (first half of the 3 sorted classes '
                           'with images) cannot rank (1 class)'.format(folder)), line
    line = stops_before_any_folder('folder', tmp_path / 'nowhere', tmp_path)
    assert line.startswith('error: Dataset folder {} not found'.format(tmp_path / 'nowhere')), line
