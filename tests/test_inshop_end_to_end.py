"""In-Shop end to end: one epoch of the LSD trainer on a generated In-Shop tree, its query-against-gallery
Test metrics and checkpoint, then evaluate.py on the run folder (the same metrics, the embeddings exported
as query and gallery sets, the retrieval figure); and a malformed partition file stopping the trainer with
one line before any folder exists. The backbone is a tiny network so that the run takes seconds."""
import json
import os

import numpy as np
import pytest

import architectures
import synthetic_retrieval_data as generated
from conftest import logged_test_metrics
from datasets import inshop
from evaluation import checkpoint_eval
from query_gallery_bruteforce import brute_force
from training import loop
from tiny_backbone import TinyBackbone

METRICS = ['e_recall@1', 'e_recall@2', 'e_recall@10', 'e_recall@20', 'mAP@R', 'mAP_c', 'nmi']


def argv(source, save_path):
    return ['--dataset', 'inshop', '--source_path', source, '--save_path', save_path, '--savename', 'run',
            '--arch', 'resnet18_normalize', '--not_pretrained', '--loss', 'margin_lsd', '--batch_mining', 'distance',
            '--kd_alpha', '50', '--kd_tau', '1', '--n_epochs', '1', '--bs', '8', '--samples_per_class', '2',
            '--embed_dim', '8', '--kernels', '0', '--seed', '0', '--no_train_metrics', '--no_plots',
            '--evaluation_metrics'] + METRICS + ['--storage_metrics', 'e_recall@1']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(source folder, run folder, evaluate.py's result, exported arrays) of one shared run."""
    patch = pytest.MonkeyPatch()
    patch.setattr(architectures, 'select', lambda arch, opt: TinyBackbone(opt.embed_dim))
    try:
        root = str(tmp_path_factory.mktemp('inshop_e2e'))
        generated.make_inshop(root, n_train_items=4, n_test_items=5, train_per_item=4, query_per_item=2,
                              gallery_per_item=3, look_alike_queries=True)
        save_path = os.path.join(root, 'runs')
        loop.main(argv(root, save_path), lsd_trainer=True)
        run_folder = os.path.join(save_path, 'inshop', 'run')
        out = os.path.join(root, 'out')
        os.makedirs(out)
        result = checkpoint_eval.main(['--checkpoint', run_folder, '--export_embeddings', out + '/emb.npz',
                                       '--retrieval_figure', out + '/figure.png', '--json', out + '/metrics.json',
                                       '--n_queries', '3', '--n_neighbours', '2'])
        exported = dict(np.load(out + '/emb.npz'))
    finally:
        patch.undo()
    return root, run_folder, result, exported, out


def test_run_logs_query_gallery_metrics_and_checkpoints_on_improvement(trained):
    _, run_folder, _, _, _ = trained
    assert os.path.isfile(os.path.join(run_folder, 'checkpoint_Test_discriminative_e_recall@1.pth.tar'))
    logged = logged_test_metrics(run_folder)
    assert set(METRICS) <= set(logged)
    assert all(0.0 <= logged[name] <= 1.0 for name in METRICS)
    assert logged['e_recall@1'] < 1.0  # every other query looks like another item


def test_evaluate_reproduces_the_logged_metrics(trained):
    _, run_folder, result, _, out = trained
    logged = logged_test_metrics(run_folder)
    assert result['metrics']['discriminative'] == {name: logged[name] for name in METRICS}
    with open(out + '/metrics.json') as handle:
        assert json.load(handle)['metrics'] == result['metrics']


def test_export_names_query_and_gallery_sets_and_metrics_match_brute_force(trained):
    root, _, result, exported, _ = trained
    rows = generated.inshop_rows(n_train_items=4, n_test_items=5, train_per_item=4, query_per_item=2,
                                 gallery_per_item=3)
    status = {os.path.join(root, 'inshop', name): s for name, _, s, _ in rows}
    assert str(exported['protocol']) == 'query_gallery' and 'features' not in exported
    assert [status[p] for p in exported['query_image_paths']] == ['query'] * 10
    assert [status[p] for p in exported['gallery_image_paths']] == ['gallery'] * 13   # first item: 1 gallery image
    assert exported['query_features'].shape == (10, 8) and exported['gallery_features'].shape == (13, 8)
    features = np.concatenate([exported['query_features'], exported['gallery_features']])
    labels = np.concatenate([exported['query_labels'], exported['gallery_labels']]).tolist()
    queries, gallery = list(range(10)), list(range(10, 23))
    for name in ('e_recall@1', 'e_recall@2', 'e_recall@10', 'e_recall@20', 'mAP@R', 'mAP_c'):
        assert result['metrics']['discriminative'][name] == pytest.approx(
            brute_force(features, labels, queries, gallery, name), abs=1e-12), name


def test_retrieval_figure_written(trained):
    _, _, _, _, out = trained
    with open(out + '/figure.png', 'rb') as handle:
        assert handle.read(8) == b'\x89PNG\r\n\x1a\n'


def test_malformed_partition_stops_before_any_folder(trained, tmp_path, capsys):
    root = trained[0]
    folder = tmp_path / 'inshop'
    folder.mkdir()
    os.symlink(os.path.join(root, 'inshop', 'img'), str(folder / 'img'))
    partition = folder / 'list_eval_partition.txt'
    partition.write_text('2\nimage_name item_id evaluation_status\nimg/a.jpg id_1 train\nimg/b.jpg id_1\n')
    save_path = tmp_path / 'runs'
    with pytest.raises(SystemExit) as stopped:
        loop.main(argv(str(tmp_path), str(save_path)), lsd_trainer=True)
    assert stopped.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert lines == ['error: {}, line 4: expected 3 fields "image_name item_id evaluation_status", got 2; '
                     'expected layout: {}'.format(partition, inshop.LAYOUT)]
    assert not save_path.exists()


def test_retrieval_figure_draws_queries_against_the_gallery():
    from datasets.query_gallery import QueryGallery
    from evaluation.retrieval_figure import figure_rows, nearest_in_gallery
    roles = QueryGallery([1, 0, 1, 0, 0, 1], [0, 1, 0, 1, 1, 0])
    features = np.array([[0], [1], [2], [3], [10], [4]], dtype=np.float32)
    rows = figure_rows(6, 2, 0, roles)
    assert set(rows) <= {0, 2, 5} and len(rows) == 2
    assert nearest_in_gallery(features, np.array([0, 5]), roles.gallery_indices, 4).tolist() == \
        [[1, 3, 4, -1], [3, 1, 4, -1]]
