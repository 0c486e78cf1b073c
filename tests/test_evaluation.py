"""evaluation.evaluate: checkpoints on strict improvement, console block, logged groups, W&B histograms."""
import argparse
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
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)
from test_metrics_computer import TinyDataset, TupleNet
from utilities import misc
from utilities.logger import Progress_Saver


class ScriptedComputer:
    """compute_of_embeddings returns the next prescribed {metric: value} for every evaltype."""

    def __init__(self, *results):
        self.results = list(results)

    def compute_of_embeddings(self, labels, features, evaltypes, n_threads, image_paths=None):
        values = self.results.pop(0)
        return ({evaltype: dict(values) for evaltype in evaltypes},
                {evaltype: {'features': None, 'image_paths': None} for evaltype in evaltypes})


def run_setup(tmp_path, **extra):
    opt = argparse.Namespace(save_path=str(tmp_path), storage_metrics=['e_recall@1'], log_online=False, epoch=0,
                             wandb_key='secret-key', experiment='comet', n_classes=4, rho_spectrum_embed_dim=6,
                             evaluate_on_gpu=False, kernels=1, **extra)
    log = types.SimpleNamespace(save_path=str(tmp_path),
                                progress_saver={'Test': Progress_Saver(), 'Train': Progress_Saver()})
    return opt, log


class NoLoader:
    dataset = None


class ScriptedEmbedder:
    """Stands in for evaluation.Embedder: a fixed model, no rows (the scripted computer ignores them)."""
    world = None

    def __init__(self):
        self.model = TupleNet()

    def __call__(self, loader, evaltypes):
        return torch.zeros(0), {evaltype: torch.zeros(0, 6) for evaltype in evaltypes}, torch.zeros(0)


def evaluate(log, computer, opt, loader=NoLoader(), embedder=None, **kwargs):
    evaluation.evaluate(log, computer, loader, embedder or ScriptedEmbedder(), evaltypes=['discriminative'],
                        storage_metrics=opt.storage_metrics, recorded_options=misc.redacted_namespace(opt),
                        epoch=opt.epoch, log_online=opt.log_online, n_threads=1, **kwargs)


def test_checkpoint_written_first_then_only_on_strict_improvement(tmp_path, capsys):
    opt, log = run_setup(tmp_path)
    path = tmp_path / 'checkpoint_Test_discriminative_e_recall@1.pth.tar'
    computer = ScriptedComputer({'e_recall@1': 0.5}, {'e_recall@1': 0.5}, {'e_recall@1': 0.4},
                                {'e_recall@1': 0.6})
    evaluate(log, computer, opt)
    assert path.exists() and 'Saved weights for best Test: discriminative_e_recall' in capsys.readouterr().out
    path.unlink()
    for _ in range(2):  # equal, then lower: no checkpoint
        evaluate(log, computer, opt)
        assert not path.exists() and 'Saved weights' not in capsys.readouterr().out
    evaluate(log, computer, opt)
    assert path.exists()
    assert log.progress_saver['Test'].groups['discriminative_e_recall']['e_recall@1']['content'] == [0.5, 0.5, 0.4, 0.6]


def test_checkpoint_content_is_saved_before_logging_and_redacted(tmp_path):
    opt, log = run_setup(tmp_path)
    evaluate(log, ScriptedComputer({'e_recall@1': 0.5}), opt, aux_store={'note': 1}, log_key='Train')
    saved = torch.load(tmp_path / 'checkpoint_Train_discriminative_e_recall@1.pth.tar', weights_only=False)
    assert set(saved) == {'state_dict', 'opt', 'progress', 'aux'}
    assert saved['aux'] == {'note': 1}
    assert saved['opt'].wandb_key == '<redacted>' and not hasattr(saved['opt'], 'experiment')
    assert opt.wandb_key == 'secret-key'
    assert set(saved['progress']) == {'Test', 'Train'}
    assert saved['progress']['Train'].groups == {}  # written before this evaluation logged anything
    assert torch.equal(saved['state_dict']['last_linear.weight'], TupleNet().state_dict()['last_linear.weight'])


def test_store_checkpoints_false_writes_nothing(tmp_path):
    opt, log = run_setup(tmp_path)
    evaluate(log, ScriptedComputer({'e_recall@1': 0.5}), opt, store_checkpoints=False)
    assert not any(name.startswith('checkpoint') for name in os.listdir(tmp_path))


def test_console_block_and_logged_groups(tmp_path, capsys):
    opt, log = run_setup(tmp_path)
    values = {'e_recall@1': 0.5, 'e_recall@5': 0.75, 'nmi': 0.123456, 'dists@intra': 0.2, 'dists@inter': 0.4,
              'rho_spectrum@0': np.array([0.6, 0.4]), 'rho_spectrum@-1': 0.01}
    evaluate(log, ScriptedComputer(values), opt)
    assert capsys.readouterr().out.startswith(
        'Embed-Type: discriminative:\ne_recall@1: 0.5000 | e_recall@5: 0.7500 | nmi: 0.1235 | dists@intra: 0.2000'
        ' | dists@inter: 0.4000 | rho_spectrum@-1: 0.0100\n\n')
    groups = log.progress_saver['Test'].groups
    assert list(groups) == ['discriminative_e_recall', 'discriminative_nmi', 'discriminative_dists',
                            'discriminative_rho_spectrum']
    assert list(groups['discriminative_e_recall']) == ['e_recall@1', 'e_recall@5']
    assert list(groups['discriminative_dists']) == ['dists@intra', 'dists@inter']
    assert groups['discriminative_rho_spectrum'] == {'rho_spectrum@-1': {'content': [0.01], 'saved_idx': 0}}


def test_histograms_go_to_wandb_at_the_epoch_step(tmp_path, monkeypatch):
    logged = []
    fake = types.SimpleNamespace(log=lambda data, step: logged.append((data, step)),
                                 Histogram=lambda np_histogram: np_histogram)
    monkeypatch.setitem(sys.modules, 'wandb', fake)
    opt, log = run_setup(tmp_path)
    opt.log_online, opt.epoch = True, 7
    evaluate(log, ScriptedComputer({'e_recall@1': 0.5, 'rho_spectrum@0': np.array([0.5, 0.25, 0.25])}), opt)
    assert [(list(data), step) for data, step in logged] == [
        (['Test: discriminative_rho_spectrum@0'], 7), (['Test: discriminative_LOG-rho_spectrum@0'], 7)]
    heights, edges = logged[0][0]['Test: discriminative_rho_spectrum@0']
    assert heights == [0.5, 0.25, 0.25] and edges == [0, 1, 2, 3]
    log_heights = logged[1][0]['Test: discriminative_LOG-rho_spectrum@0'][0]
    np.testing.assert_allclose(log_heights, np.log([0.5, 0.25, 0.25]) + 20)


def test_real_pass_with_sample_recoveries_figure(tmp_path):
    dataset = TinyDataset()
    for i, (path, _) in enumerate(dataset.image_paths):
        full = str(tmp_path / path)
        Image.new('L' if i % 2 else 'RGB', (8, 6), color=i * 10).save(full)
        dataset.image_paths[i] = (full, dataset.image_paths[i][1])
    opt, log = run_setup(tmp_path)
    computer = metrics.MetricComputer(['e_recall@1', 'e_recall@2', 'nmi'], opt)
    np.random.seed(0)
    evaluate(log, computer, opt, loader=DataLoader(dataset, batch_size=8),
             embedder=evaluation.Embedder(TupleNet(), torch.device('cpu')), make_recall_plot=True)
    with Image.open(tmp_path / 'sample_recoveries.png') as figure:
        assert figure.size == (1000, 2000)  # 10 x 20 inches at 100 dpi
    assert set(log.progress_saver['Test'].groups) == {'discriminative_e_recall', 'discriminative_nmi'}
    assert (tmp_path / 'checkpoint_Test_discriminative_e_recall@1.pth.tar').exists()


def test_storage_metric_that_was_not_computed_is_a_clear_error(tmp_path):
    opt, log = run_setup(tmp_path)
    opt.storage_metrics = ['mAP_c']
    with pytest.raises(ValueError, match='--storage_metrics mAP_c'):
        evaluate(log, ScriptedComputer({'e_recall@1': 0.5}), opt)
