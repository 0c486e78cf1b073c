"""evaluate.py: a saved checkpoint of a 2-epoch digits run, re-evaluated, gives the values training logged
for that epoch; the export, the retrieval figure and the one-line errors."""
import contextlib
import copy
import csv
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import checkpoint_eval, retrieval_figure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ['e_recall@1', 'e_recall@2', 'nmi', 'mAP_c']
CHECKPOINT = 'checkpoint_Test_discriminative_e_recall@1.pth.tar'


@pytest.fixture(scope='module')
def run_folder(finished_run):
    """The shared 2-epoch digits run (tests/conftest.py), trained with the metrics of METRICS."""
    return finished_run


def logged(run, file_name):
    with open(os.path.join(run, 'CSV_Logs', file_name), newline='') as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def last_strict_improvement(values):
    """Epoch of the checkpoint kept for a storage metric: the last epoch beating every earlier one."""
    best_epoch, best = 0, values[0]
    for epoch, value in enumerate(values):
        if value > best:
            best_epoch, best = epoch, value
    return best_epoch


@pytest.fixture(scope='module')
def evaluated(run_folder, tmp_path_factory):
    """One evaluation of the run's checkpoint, saved in the older layout (a real W&B key in the options,
    which must not leak; source_path = <parent>/<dataset>), given as a run folder, with every output."""
    out = tmp_path_factory.mktemp('evaluated')
    checkpoint = torch.load(os.path.join(run_folder, CHECKPOINT), map_location='cpu', weights_only=False)
    checkpoint['opt'] = copy.copy(checkpoint['opt'])
    checkpoint['opt'].wandb_key = 'secret-key-123'
    (out / 'run').mkdir()
    torch.save(checkpoint, str(out / 'run' / CHECKPOINT))
    paths = {'json': out / 'metrics.json', 'npz': out / 'emb.npz', 'png': out / 'fig.png', 'run': out / 'run'}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = checkpoint_eval.main(['--checkpoint', str(out / 'run'), '--evaluation_metrics'] + METRICS + [
            'mAP@R', '--json', str(paths['json']), '--export_embeddings', str(paths['npz']),
            '--retrieval_figure', str(paths['png']), '--n_queries', '3', '--n_neighbours', '4'])
    paths['printed'] = printed.getvalue()
    return result, paths


def test_evaluating_the_checkpoint_reproduces_the_logged_values(run_folder, evaluated):
    result, paths = evaluated
    assert result['checkpoint'] == str(paths['run'] / CHECKPOINT)  # the run folder's only checkpoint
    recall = logged(run_folder, 'Data_Test_discriminative_e_recall.csv')
    epoch = last_strict_improvement([row['e_recall@1'] for row in recall])
    assert result['epoch'] == epoch
    expected = dict(recall[epoch])
    expected.update(logged(run_folder, 'Data_Test_discriminative_nmi.csv')[epoch])
    expected.update(logged(run_folder, 'Data_Test_discriminative_mAP_c.csv')[epoch])
    written = json.loads(paths['json'].read_text())
    assert written == result and written['split'] == 'test'
    assert list(written['metrics']['discriminative']) == METRICS + ['mAP@R']
    for name in METRICS:
        assert written['metrics']['discriminative'][name] == pytest.approx(expected[name], abs=1e-4), name


def test_printed_in_the_trainers_format(evaluated):
    result, paths = evaluated
    values = result['metrics']['discriminative']
    assert 'Embed-Type: discriminative:\n' + ' | '.join('{}: {:4.4f}'.format(name, values[name]) for name in values) \
        + '\n' in paths['printed']


def brute_force_recall_at_1(features, labels):
    distances = ((features[:, None, :].astype(np.float64) - features[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[distances.argmin(1)] == labels))


def brute_force_map_at_r(features, labels):
    """mAP@R (Musgrave et al.): R = other images of the query's class; mean over the first R ranks of
    precision@i at the hits, divided by R."""
    distances = ((features[:, None, :].astype(np.float64) - features[None, :, :]) ** 2).sum(-1)
    scores = []
    for query in range(len(labels)):
        others = np.array([j for j in np.argsort(distances[query], kind='stable') if j != query])
        r = int((labels == labels[query]).sum()) - 1
        hits = labels[others[:r]] == labels[query]
        precision = np.cumsum(hits) / np.arange(1, r + 1)
        scores.append(float((precision * hits).sum() / r))
    return float(np.mean(scores))


def test_export_contents_and_shapes(evaluated):
    result, paths = evaluated
    data = np.load(str(paths['npz']), allow_pickle=False)
    features, labels, image_paths = data['features'], data['labels'], data['image_paths']
    assert features.dtype == np.float32 and features.shape == (len(labels), 8) and labels.dtype == np.int64
    # the test half of digits: classes 5-9, each image in the folder named by its class
    assert sorted(set(labels.tolist())) == [5, 6, 7, 8, 9] and len(image_paths) == len(labels) > 800
    assert [int(os.path.basename(os.path.dirname(p))) for p in image_paths] == labels.tolist()
    assert np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)  # resnet18_normalize
    assert int(data['epoch']) == result['epoch'] and str(data['split']) == 'test'
    assert list(data['class_ids']) == [5, 6, 7, 8, 9] and list(data['class_names']) == ['5', '6', '7', '8', '9']
    options = json.loads(str(data['options']))
    assert options['dataset'] == 'digits' and options['embed_dim'] == 8 and options['wandb_key'] == '<redacted>'
    assert b'secret-key-123' not in paths['npz'].read_bytes()
    # the exported rows are the ones the metrics were computed on
    values = result['metrics']['discriminative']
    assert values['e_recall@1'] == pytest.approx(brute_force_recall_at_1(features, labels), abs=1e-6)
    assert values['mAP@R'] == pytest.approx(brute_force_map_at_r(features, labels), abs=1e-6)


def test_retrieval_figure_is_a_png_grid(evaluated):
    with Image.open(str(evaluated[1]['png'])) as image:
        assert image.format == 'PNG' and image.size == (850, 675)  # 5 columns × 3 rows at 1.7 in per image


def test_neighbours_of_the_figure_are_the_nearest_other_images():
    rng = np.random.RandomState(3)
    features = rng.normal(size=(40, 5)).astype(np.float32)
    features[7] = features[3]  # a duplicate: the query itself must be dropped, its twin kept
    queries = retrieval_figure.choose_queries(40, 6, seed=1)
    assert list(queries) == list(retrieval_figure.choose_queries(40, 6, seed=1)) and len(set(queries)) == 6
    assert list(queries) == sorted(queries)
    found = retrieval_figure.nearest_others(features, np.array([3, 10]), 4)
    distances = ((features[:, None] - features[None]) ** 2).sum(-1)
    for row, query in enumerate([3, 10]):
        expected = [j for j in np.argsort(distances[query], kind='stable') if j != query][:4]
        assert list(found[row]) == expected
    assert found[0][0] == 7
    padded = retrieval_figure.nearest_others(features[:3], np.array([0]), 4)
    assert list(padded[0][2:]) == [-1, -1]


def test_checkpoint_choice_epoch_and_data_folder_rules(tmp_path):
    for name in ('checkpoint_Test_discriminative_e_recall@1.pth.tar', 'checkpoint_Val_discriminative_e_recall@1.pth.tar'):
        (tmp_path / name).write_bytes(b'')
    assert checkpoint_eval.resolve_checkpoint(str(tmp_path)).endswith('checkpoint_Val_discriminative_e_recall@1.pth.tar')
    from utilities.logger import Progress_Saver
    train = Progress_Saver()
    for epoch in range(4):
        train.log('epochs', epoch)
    assert checkpoint_eval.checkpoint_epoch({'epoch': 7, 'progress': {'Train': train}, 'opt': None}) == 7
    assert checkpoint_eval.checkpoint_epoch({'progress': {'Train': train}, 'opt': None}) == 3
    (tmp_path / 'data' / 'cub200' / 'images').mkdir(parents=True)
    parent = str(tmp_path / 'data')
    assert checkpoint_eval.dataset_parent(parent + '/cub200', 'cub200') == parent     # the reference's saved value
    assert checkpoint_eval.dataset_parent(parent, 'cub200') == parent                 # already the parent


def one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        checkpoint_eval.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith('error: ') and err.count('\n') == 1, err
    return err


def test_errors_are_one_line(run_folder, tmp_path, capsys):
    checkpoint_path = os.path.join(run_folder, CHECKPOINT)
    text = tmp_path / 'notes.pth.tar'
    text.write_text('not a checkpoint')
    assert 'not a checkpoint of this framework' in one_line_error(['--checkpoint', str(text)], capsys)
    foreign = tmp_path / 'foreign.pth.tar'
    torch.save({'model': {}}, str(foreign))
    assert "expected a dict with 'state_dict' and 'opt'" in one_line_error(['--checkpoint', str(foreign)], capsys)
    assert 'no such file or folder' in one_line_error(['--checkpoint', str(tmp_path / 'missing')], capsys)
    assert 'holds no checkpoint' in one_line_error(['--checkpoint', str(tmp_path)], capsys)
    err = one_line_error(['--checkpoint', checkpoint_path, '--evaluation_metrics', 'e_recall@1', 'no_such_metric'],
                         capsys)
    assert '--evaluation_metrics' in err and 'no_such_metric' in err
    assert '--split val' in one_line_error(['--checkpoint', checkpoint_path, '--split', 'val'], capsys)
    err = one_line_error(['--checkpoint', checkpoint_path, '--json', str(tmp_path / 'no' / 'm.json')], capsys)
    assert '--json' in err and 'does not exist' in err
    checkpoint = torch.load(checkpoint_path, map_location='cpu', weights_only=False)
    checkpoint['opt'] = copy.copy(checkpoint['opt'])
    checkpoint['opt'].dataset = 'cub200'
    moved = tmp_path / 'moved.pth.tar'
    torch.save(checkpoint, str(moved))
    err = one_line_error(['--checkpoint', str(moved), '--source_path', str(tmp_path / 'nowhere')], capsys)
    assert '--source_path' in err and 'nowhere' in err
