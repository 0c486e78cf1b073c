"""evaluation: `evaluate` returns the metric computer's values of the embedded rows, with no side effect; its
consumers print, log, send W&B histograms, draw the sample recoveries and checkpoint on strict improvement."""
import os
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import evaluation
import metrics
from datasets.query_gallery import QueryGallery
from metrics_bruteforce import recall_at_k, single_faiss_thread  # noqa: F401 (autouse fixture)
from test_metrics_computer import PlainNet, TinyDataset, TupleNet, options
from utilities.logger import Progress_Saver

NAMES = ['e_recall@1', 'e_recall@4', 'nmi', 'f1', 'mAP_c', 'dists@inter', 'rho_spectrum@0', 'rho_spectrum@1']


def evaluate(dataset, model, names=NAMES, evaltypes=('discriminative',), batch_size=None, world=None):
    embedder = evaluation.Embedder(model, torch.device('cpu'), world=world)
    loader = DataLoader(dataset, batch_size=batch_size or len(dataset), shuffle=False)
    return evaluation.evaluate(loader, embedder=embedder, metric_computer=metrics.MetricComputer(names, options()),
                               evaltypes=list(evaltypes), n_threads=1)


def brute_force_embeddings(model, dataset):
    with torch.no_grad():
        return TupleNet.forward(model, dataset.images)[0]


# ---------------------------------------------------------------------------------------------- the result

@pytest.mark.parametrize('net', [TupleNet, PlainNet])
def test_returns_exactly_the_metric_computers_values_of_the_embeddings(net):
    """One forward of all rows (the loader's single batch) gives the same floats as the loader: every metric,
    scalar or array, equals compute_metrics on those embeddings, sorted into scalars and histograms."""
    dataset, model = TinyDataset(), net()
    result = evaluate(dataset, model, evaltypes=('discriminative', 'other'))
    assert not model.training
    embeddings = brute_force_embeddings(model, dataset)
    expected = metrics.compute_metrics(embeddings, dataset.labels, NAMES, options())
    for evaltype in ('discriminative', 'other'):
        assert torch.equal(result.features[evaltype], embeddings)
        scalars, arrays = result.metrics[evaltype], result.histograms[evaltype]
        assert list(scalars) == [n for n in NAMES if n != 'rho_spectrum@0'] and list(arrays) == ['rho_spectrum@0']
        for name in scalars:
            assert scalars[name] == expected[name], name
        np.testing.assert_array_equal(arrays['rho_spectrum@0'], expected['rho_spectrum@0'])
    assert result.labels.tolist() == dataset.labels.tolist()
    assert result.image_paths is dataset.image_paths
    for k in (1, 4):   # and an independent oracle
        assert result.metrics['discriminative']['e_recall@{}'.format(k)] == pytest.approx(
            recall_at_k(embeddings.numpy(), list(dataset.labels), k))


def test_batches_change_only_the_last_bits():
    dataset, model = TinyDataset(), TupleNet()
    result = evaluate(dataset, model, batch_size=5)
    np.testing.assert_allclose(result.features['discriminative'], brute_force_embeddings(model, dataset), rtol=1e-6)
    expected = metrics.compute_metrics(result.features['discriminative'], dataset.labels, NAMES, options())
    assert result.metrics['discriminative'] == {n: v for n, v in expected.items() if n != 'rho_spectrum@0'}


def test_dict_outputs_are_picked_per_evaltype():
    class DictNet(TupleNet):
        def forward(self, x):
            embedding = super().forward(x)[0]
            return {'a': embedding, 'b': -embedding[:, :3]}, None

    result = evaluate(TinyDataset(), DictNet(), names=['dists@inter'], evaltypes=('a', 'b'), batch_size=7)
    assert result.features['a'].shape == (24, 6) and result.features['b'].shape == (24, 3)
    assert set(result.metrics) == {'a', 'b'} and result.histograms == {}


def test_a_split_with_roles_ranks_its_queries_against_its_gallery():
    dataset, model = TinyDataset(), TupleNet()
    dataset.query_gallery = QueryGallery(np.arange(24) < 10, np.arange(24) >= 10)
    names = ['e_recall@1', 'mAP@R', 'nmi']
    result = evaluate(dataset, model, names=names)
    embeddings = brute_force_embeddings(model, dataset)
    expected = metrics.compute_metrics(embeddings, dataset.labels, names, options(),
                                       query_gallery=dataset.query_gallery)
    assert result.metrics['discriminative'] == expected
    assert expected != metrics.compute_metrics(embeddings, dataset.labels, names, options())


def test_nothing_is_printed_or_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    numpy_state = np.random.get_state()[1].copy()
    evaluate(TinyDataset(), TupleNet())
    assert capsys.readouterr().out == '' and os.listdir(tmp_path) == []
    assert (np.random.get_state()[1] == numpy_state).all()


def test_a_data_parallel_helper_embeds_and_gets_none():
    """The helper takes part in the embedding (its gather) and leaves the metrics to the main process."""
    calls = []

    class HelperEmbedder:
        world = types.SimpleNamespace(enabled=True, is_main=False)

        def __call__(self, loader, evaltypes):
            calls.append(list(evaltypes))
            return torch.zeros(0), {}, torch.zeros(0)

    class NoComputer:
        def compute_of_embeddings(self, *args, **kwargs):
            raise AssertionError('a helper process computed metrics')

    loader = DataLoader(TinyDataset(), batch_size=8)
    assert evaluation.evaluate(loader, embedder=HelperEmbedder(), metric_computer=NoComputer(),
                               evaltypes=['discriminative'], n_threads=1) is None
    assert calls == [['discriminative']]


# -------------------------------------------------------------------------------- reporting consumers

def test_console_block_and_logged_groups():
    values = {'e_recall@1': 0.5, 'e_recall@5': 0.75, 'nmi': 0.123456, 'dists@intra': 0.2, 'dists@inter': 0.4,
              'rho_spectrum@0': np.array([0.6, 0.4]), 'rho_spectrum@-1': 0.01}
    scalars, arrays = evaluation.split_metrics({'discriminative': values})
    assert list(arrays['discriminative']) == ['rho_spectrum@0']
    assert evaluation.result_block(scalars) == (
        'Embed-Type: discriminative:\ne_recall@1: 0.5000 | e_recall@5: 0.7500 | nmi: 0.1235 | dists@intra: 0.2000'
        ' | dists@inter: 0.4000 | rho_spectrum@-1: 0.0100\n')
    saver = Progress_Saver()
    evaluation.log_metrics(saver, scalars)
    groups = saver.groups
    assert list(groups) == ['discriminative_e_recall', 'discriminative_nmi', 'discriminative_dists',
                            'discriminative_rho_spectrum']
    assert list(groups['discriminative_e_recall']) == ['e_recall@1', 'e_recall@5']
    assert list(groups['discriminative_dists']) == ['dists@intra', 'dists@inter']
    assert groups['discriminative_rho_spectrum'] == {'rho_spectrum@-1': {'content': [0.01], 'saved_idx': 0}}


def test_an_epoch_row_comes_first_when_asked():
    saver = Progress_Saver()
    evaluation.log_metrics(saver, {'discriminative': {'e_recall@1': 0.5}}, epoch=4)
    assert list(saver.groups) == ['epochs', 'discriminative_e_recall']
    assert saver.groups['epochs']['epochs']['content'] == [4]


def test_histograms_go_to_wandb_at_the_epoch_step(monkeypatch):
    logged = []
    fake = types.SimpleNamespace(log=lambda data, step: logged.append((data, step)),
                                 Histogram=lambda np_histogram: np_histogram)
    monkeypatch.setitem(sys.modules, 'wandb', fake)
    evaluation.log_histograms({'discriminative': {'rho_spectrum@0': np.array([0.5, 0.25, 0.25])}}, epoch=7,
                              log_key='Test')
    assert [(list(data), step) for data, step in logged] == [
        (['Test: discriminative_rho_spectrum@0'], 7), (['Test: discriminative_LOG-rho_spectrum@0'], 7)]
    heights, edges = logged[0][0]['Test: discriminative_rho_spectrum@0']
    assert heights == [0.5, 0.25, 0.25] and edges == [0, 1, 2, 3]
    log_heights = logged[1][0]['Test: discriminative_LOG-rho_spectrum@0'][0]
    np.testing.assert_allclose(log_heights, np.log([0.5, 0.25, 0.25]) + 20)


def test_sample_recoveries_figure_of_a_real_result(tmp_path):
    from evaluation.recall_plot import save_sample_recoveries
    dataset = TinyDataset()
    for i, (path, _) in enumerate(dataset.image_paths):
        full = str(tmp_path / path)
        Image.new('L' if i % 2 else 'RGB', (8, 6), color=i * 10).save(full)
        dataset.image_paths[i] = (full, dataset.image_paths[i][1])
    result = evaluate(dataset, TupleNet(), names=['e_recall@1'])
    np.random.seed(0)
    save_sample_recoveries(result.features['discriminative'], result.image_paths, str(tmp_path / 'recoveries.png'))
    with Image.open(tmp_path / 'recoveries.png') as figure:
        assert figure.size == (1000, 2000)  # 10 x 20 inches at 100 dpi


# ---------------------------------------------------------------------------------------- checkpoints

def reference_rule(history, value):
    """Today's rule, written as the reference wrote it: no history yet, or beats the maximum of it."""
    return not history or value > np.max(history)


def saver_for(tmp_path, storage_metrics=('e_recall@1',), evaltypes=('discriminative',)):
    return evaluation.CheckpointSaver(str(tmp_path), storage_metrics=storage_metrics, evaltypes=evaltypes)


def test_first_then_only_strict_improvements_are_saved(tmp_path, capsys):
    sequence = [0.5, 0.5, 0.4, 0.6, 0.6, 0.7, float('nan'), 0.9]
    # hand-computed: the first value, then 0.6 and 0.7; a tie keeps the older; after NaN the maximum of the
    # history is NaN, which nothing beats
    expected = [True, False, False, True, False, True, False, False]
    assert [reference_rule(sequence[:i], v) for i, v in enumerate(sequence)] == expected
    saver, path = saver_for(tmp_path), tmp_path / 'checkpoint_Test_discriminative_e_recall@1.pth.tar'
    saved = []
    for step, value in enumerate(sequence):
        written = saver.save_improved('Test', {'discriminative': {'e_recall@1': value}},
                                      contents=lambda: {'step': step})
        saved.append(bool(written))
        assert written == ([str(path)] if saved[-1] else [])
        out = capsys.readouterr().out
        assert out == ('Saved weights for best Test: discriminative_e_recall\n\n' if saved[-1] else '')
        if saved[-1]:
            assert torch.load(path, weights_only=False) == {'step': step}
    assert saved == expected


def test_each_split_evaltype_and_metric_keeps_its_own_best(tmp_path):
    saver = saver_for(tmp_path, storage_metrics=('e_recall@1', 'nmi'), evaltypes=('a', 'b'))
    built = []

    def contents():
        built.append(1)
        return {}
    first = {'a': {'e_recall@1': 0.5, 'nmi': 0.3}, 'b': {'e_recall@1': 0.5, 'nmi': 0.3}}
    assert len(saver.save_improved('Test', first, contents=contents)) == 4
    assert len(saver.save_improved('Val', first, contents=contents)) == 4
    second = {'a': {'e_recall@1': 0.6, 'nmi': 0.3}, 'b': {'e_recall@1': 0.4, 'nmi': 0.35}}
    written = saver.save_improved('Test', second, contents=contents)
    assert [os.path.basename(p) for p in written] == ['checkpoint_Test_a_e_recall@1.pth.tar',
                                                      'checkpoint_Test_b_nmi.pth.tar']
    assert len(built) == 10  # the checkpoint is built only when one is written
    assert [os.path.basename(p) for p in saver.save_improved('Val', second, contents=contents)] == [
        'checkpoint_Val_a_e_recall@1.pth.tar', 'checkpoint_Val_b_nmi.pth.tar']
    assert saver.best[('Test', 'b', 'e_recall@1')] == 0.5 and saver.best[('Val', 'a', 'e_recall@1')] == 0.6


def test_a_resumed_saver_decides_as_the_uninterrupted_one(tmp_path):
    """The best of a resumed run comes from its restored logs: the same decisions as without the kill."""
    recall = [0.3, 0.6, 0.5, 0.6, 0.4, 0.5, 0.7, 0.7, 0.65, 0.8]
    nmi = [0.5, 0.4, 0.45, 0.5, 0.55, 0.5, 0.52, 0.56, 0.2, 0.56]
    evaluations = [{'discriminative': {'e_recall@1': v, 'nmi': w}} for v, w in zip(recall, nmi)]
    storage = dict(storage_metrics=('e_recall@1', 'nmi'))
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()

    def decisions(saver, logs, sequence):
        made = []
        for result in sequence:
            made.append(saver.save_improved('Test', result, contents=dict))
            evaluation.log_metrics(logs['Test'], result)
        return made
    uninterrupted = decisions(saver_for(tmp_path / 'a', **storage), {'Test': Progress_Saver()}, evaluations)
    logs = {'Test': Progress_Saver(), 'Val': Progress_Saver()}
    before = decisions(saver_for(tmp_path / 'b', **storage), logs, evaluations[:5])
    resumed = saver_for(tmp_path / 'b', **storage)
    resumed.restore(logs)
    after = decisions(resumed, logs, evaluations[5:])
    strip = lambda made: [[os.path.basename(p) for p in paths] for paths in made]
    assert strip(before + after) == strip(uninterrupted)
    recall_file, nmi_file = 'checkpoint_Test_discriminative_e_recall@1.pth.tar', 'checkpoint_Test_discriminative_nmi.pth.tar'
    assert strip(uninterrupted) == [[recall_file, nmi_file], [recall_file], [], [], [nmi_file],   # the kill
                                    [], [recall_file], [nmi_file], [], [recall_file]]


def test_storage_metric_that_was_not_computed_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match='--storage_metrics mAP_c'):
        saver_for(tmp_path, storage_metrics=('mAP_c',)).save_improved(
            'Test', {'discriminative': {'e_recall@1': 0.5}}, contents=dict)
    assert os.listdir(tmp_path) == []


def test_a_trainer_checkpoint_holds_the_logs_before_the_evaluation_and_the_redacted_options(tmp_path):
    from conftest import TINY_NETWORK, run_trainer_in_process
    done = run_trainer_in_process(['--dataset', 'digits', *TINY_NETWORK, '--not_pretrained', '--bs', '40',
                                   '--kernels', '0', '--n_epochs', '1', '--no_plots', '--wandb_key', 'secret-key',
                                   '--evaluation_metrics', 'e_recall@1', '--save_path', str(tmp_path),
                                   '--savename', 'run'], script='main_original.py')
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / 'digits' / 'run'
    saved = torch.load(folder / 'checkpoint_Test_discriminative_e_recall@1.pth.tar', weights_only=False)
    assert set(saved) == {'state_dict', 'opt', 'progress', 'aux'} and saved['aux'] is None
    assert saved['opt'].wandb_key == '<redacted>' and saved['opt'].epoch == 0
    assert set(saved['progress']['Test'].groups) == set()  # written before this evaluation logged anything
    assert saved['progress']['Train'].groups['epochs']['epochs']['content'] == [0]
    assert 'Saved weights for best Test: discriminative_e_recall' in done.stdout
    final = torch.load(folder / 'resume_state.pth.tar', weights_only=False)['model']
    assert all(torch.equal(saved['state_dict'][k], final[k]) for k in final)
