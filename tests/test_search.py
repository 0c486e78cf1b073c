"""`python -m utilities.search`: an index of the digits written as an image folder, built with the shared
finished run's model, saved, then queried in a new process: each indexed image is its own nearest
neighbour and the neighbours equal brute force on embeddings computed without the index, the DataLoader
or the Embedder. Approximate indexes report their recall; `add` extends an index; bad input is one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, clean_environment
from datasets import write_digits
from datasets.decoding import load_pil_rgb
from datasets.image_transforms import digits_pipeline
from evaluation import checkpoint_eval
from utilities import search
from utilities.search_index import SavedIndex, new_index, recall_against_exact

PER_CLASS = 4
K = 5


@pytest.fixture(scope='module')
def collection(tmp_path_factory, finished_run):
    """(run folder, image folder, index file) of an exact index over 40 digits."""
    root = tmp_path_factory.mktemp('search')
    images = write_digits.write(str(root / 'digits'), False, PER_CLASS)
    index = str(root / 'digits.index')
    search.main(['build', '--checkpoint', finished_run, '--images', images, '--out', index, '--progress', 'off'])
    return finished_run, images, index


def image_paths(folder):
    return sorted(os.path.join(folder, d, name) for d in os.listdir(folder) for name in os.listdir(os.path.join(folder, d)))


def independent_embeddings(run_folder, paths):
    """The network applied to each image's evaluation transform, one image at a time (float64 out)."""
    checkpoint = checkpoint_eval.load_checkpoint(checkpoint_eval.resolve_checkpoint(run_folder))
    cli = type('cli', (), {'source_path': None, 'evaluation_metrics': None, 'evaluate_on_gpu': False,
                           'kernels': 0})()
    opt = checkpoint_eval.evaluation_options(checkpoint['opt'], cli)
    model = checkpoint_eval.build_network(opt, checkpoint['state_dict'], torch.device('cpu'))
    _, _, transform = digits_pipeline(opt, is_validation=True)
    with torch.no_grad():
        rows = [model(transform(load_pil_rgb(path))[None])[0][0].double().numpy() for path in paths]
    return np.stack(rows)


def test_reloaded_in_a_new_process_each_image_finds_itself_and_brute_force_neighbours(collection):
    run_folder, images, index = collection
    paths = image_paths(images)
    done = subprocess.run([sys.executable, '-m', 'utilities.search', 'query', '--index', index, '--k', str(K),
                           '--json'] + paths, cwd=ROOT, capture_output=True, text=True, env=clean_environment(),
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)['results']
    assert [r['query'] for r in results] == paths
    features = independent_embeddings(run_folder, paths)
    distances = np.sqrt(((features[:, None, :] - features[None, :, :]) ** 2).sum(-1))
    labels = {path: os.path.basename(os.path.dirname(path)) for path in paths}
    for i, result in enumerate(results):
        hits = result['neighbours']
        assert hits[0]['path'] == paths[i] and hits[0]['distance'] == pytest.approx(0, abs=1e-3)
        expected = np.argsort(distances[i], kind='stable')[:K]
        assert [hit['path'] for hit in hits] == [paths[j] for j in expected]
        assert [hit['distance'] for hit in hits] == pytest.approx(distances[i][expected].tolist(), abs=1e-4)
        assert [hit['label'] for hit in hits] == [labels[paths[j]] for j in expected]


def test_saved_index_records_paths_labels_and_model(collection):
    run_folder, images, index = collection
    saved = SavedIndex.load(index)
    assert saved.paths == image_paths(images) and len(saved) == 10 * PER_CLASS
    assert saved.labels == [os.path.basename(os.path.dirname(p)) for p in saved.paths]
    assert saved.model['checkpoint'].startswith(os.path.abspath(run_folder)) and len(saved.model['fingerprint']) == 64


def test_query_text_and_figure(collection, tmp_path, capsys):
    _, images, index = collection
    query = image_paths(images)[7]
    search.main(['query', '--index', index, query, '--k', '3', '--figure', str(tmp_path / 'q.png')])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'query {}'.format(query) and lines[1].split()[:3] == ['1', '0.0000', query]
    assert len([line for line in lines if line.startswith('  ')]) == 3
    assert (tmp_path / 'q.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_add_extends_the_index(collection, tmp_path, capsys):
    run_folder, images, index = collection
    copy = str(tmp_path / 'copy.index')
    with open(index, 'rb') as source, open(copy, 'wb') as target:
        target.write(source.read())
    extra = write_digits.write(str(tmp_path / 'extra'), True, 5)  # 50 more digits, with their CSV labels
    search.main(['add', '--index', copy, '--checkpoint', run_folder, '--images', extra, '--progress', 'off'])
    saved = SavedIndex.load(copy)
    assert len(saved) == 10 * PER_CLASS + 50 and saved.labels[-1] != ''
    capsys.readouterr()
    new_image = saved.paths[-1]
    results = search.main(['query', '--index', copy, new_image, '--k', '1', '--json'])
    assert results[0]['neighbours'][0]['path'] == new_image


@pytest.mark.parametrize('kind', ['ivf', 'hnsw'])
def test_approximate_index_prints_its_recall(collection, tmp_path, capsys, kind):
    run_folder, images, _ = collection
    out = str(tmp_path / (kind + '.index'))
    search.main(['build', '--checkpoint', run_folder, '--images', images, '--out', out, '--approximate', kind,
                 '--progress', 'off'])
    lines = capsys.readouterr().out.splitlines()
    recall_lines = [line for line in lines if line.startswith('{} recall@10 against exact search: '.format(kind))]
    assert len(recall_lines) == 1
    assert 0.0 <= float(recall_lines[0].split(': ')[1].split()[0]) <= 1.0
    assert SavedIndex.load(out).kind == kind


def test_recall_against_exact_counts_shared_neighbours():
    vectors = np.random.RandomState(0).randn(500, 8).astype(np.float32)
    assert recall_against_exact(new_index('exact', vectors), vectors, 10) == 1.0
    truncated = new_index('exact', vectors[:250])   # an index that misses half the collection
    recall = recall_against_exact(truncated, vectors, 10, n_queries=500)
    assert 0.3 < recall < 0.7


def error_line(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        search.main(argv)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_another_models_checkpoint_is_refused(collection, tmp_path, capsys):
    run_folder, images, index = collection
    path = checkpoint_eval.resolve_checkpoint(run_folder)
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    name = next(key for key, value in checkpoint['state_dict'].items() if value.is_floating_point())
    checkpoint['state_dict'][name] = checkpoint['state_dict'][name] + 1
    other = str(tmp_path / 'other.pth.tar')
    torch.save(checkpoint, other)
    query = image_paths(images)[0]
    line = error_line(['query', '--index', index, query, '--checkpoint', other], capsys)
    assert line.startswith('error: --checkpoint {}: the index was built by another model'.format(other))
    line = error_line(['add', '--index', index, '--checkpoint', other, '--images', images], capsys)
    assert 'the index was built by another model' in line


def test_unreadable_query_image_and_index_are_one_line(collection, tmp_path, capsys):
    _, _, index = collection
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'png?')
    line = error_line(['query', '--index', index, str(broken)], capsys)
    assert line.startswith('error: query image {} cannot be read as an image'.format(broken))
    line = error_line(['query', '--index', str(tmp_path / 'none.index'), str(broken)], capsys)
    assert line == 'error: --index {}: no such file'.format(tmp_path / 'none.index')
    line = error_line(['query', '--index', str(broken), str(broken)], capsys)
    assert line.startswith('error: --index {}: not an index written by utilities.search'.format(broken))
