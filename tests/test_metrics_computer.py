"""MetricComputer: per-evaltype metrics of embedded rows equal compute_metrics on each set of rows."""
import argparse

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import metrics
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)


class TinyDataset(Dataset):
    """Items (label, image, index) like the project's datasets; image_paths as (path, label)."""

    def __init__(self, n=24, n_classes=4):
        rng = np.random.default_rng(0)
        self.labels = np.arange(n) % n_classes
        self.images = torch.from_numpy(rng.standard_normal((n, 3, 4, 4)).astype(np.float32))
        self.image_paths = [('img_{}.png'.format(i), int(label)) for i, label in enumerate(self.labels)]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return int(self.labels[index]), self.images[index], index


class TupleNet(nn.Module):
    """Returns (embedding, extras) like resnet50/bninception."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.last_linear = nn.Linear(48, 6)

    def forward(self, x):
        return self.last_linear(x.flatten(1)), (None, None)


class PlainNet(TupleNet):
    """Returns the embedding tensor only, like googlenet."""

    def forward(self, x):
        return super().forward(x)[0]


def options():
    return argparse.Namespace(n_classes=4, rho_spectrum_embed_dim=6, evaluate_on_gpu=False, kernels=1)


def embeddings_of(model, dataset):
    with torch.no_grad():
        return TupleNet.forward(model, dataset.images)[0]


def test_compute_of_embeddings_equals_compute_metrics_per_evaltype():
    dataset = TinyDataset()
    features = embeddings_of(TupleNet(), dataset)
    names = ['e_recall@1', 'e_recall@4', 'nmi', 'f1', 'mAP_c', 'dists@inter', 'rho_spectrum@0', 'rho_spectrum@1']
    computer = metrics.MetricComputer(names, options())
    computed = computer.compute_of_embeddings(torch.as_tensor(dataset.labels), {'a': features, 'b': -features[:, :3]},
                                              ['a', 'b'], n_threads=1)
    for evaltype, rows in (('a', features), ('b', -features[:, :3])):
        expected = metrics.compute_metrics(rows, dataset.labels, names, options())
        assert list(computed[evaltype]) == names
        for name in names:
            np.testing.assert_array_equal(computed[evaltype][name], expected[name], err_msg=name)


def test_requires_is_the_ordered_union():
    computer = metrics.MetricComputer(['e_recall@1', 'nmi', 'f1', 'c_recall@1'], options())
    assert computer.requires == ['neighbour_hits', 'kmeans_nearest', 'target_labels', 'neighbour_hits_cosine']


def test_thread_count_is_restored_after_the_evaluation():
    """faiss runs with --kernels threads, but torch (same OpenMP runtime) trains on with its own count."""
    threads = torch.get_num_threads()  # 1 under the single_faiss_thread fixture
    opt = options()
    opt.kernels = threads + 2
    computer = metrics.MetricComputer(['e_recall@1'], opt)
    dataset = TinyDataset()
    computer.compute_of_embeddings(torch.as_tensor(dataset.labels), {'discriminative': embeddings_of(TupleNet(), dataset)},
                                   ['discriminative'], n_threads=opt.kernels)
    assert torch.get_num_threads() == threads


def test_n_classes_is_an_argument_and_opt_n_classes_only_its_fallback():
    """k of the k-means = the number of training classes, passed explicitly; opt.n_classes serves old callers."""
    dataset = TinyDataset()
    features = embeddings_of(TupleNet(), dataset)
    names = ['nmi', 'f1']
    bare = argparse.Namespace(rho_spectrum_embed_dim=6, evaluate_on_gpu=False, kernels=1)
    labels, rows = torch.as_tensor(dataset.labels), {'discriminative': features}
    computed = metrics.MetricComputer(names, bare, n_classes=3).compute_of_embeddings(
        labels, rows, ['discriminative'], n_threads=1)
    via_opt = options()
    via_opt.n_classes = 3
    old_style = metrics.MetricComputer(names, via_opt).compute_of_embeddings(labels, rows, ['discriminative'],
                                                                             n_threads=1)
    assert computed == old_style
    overridden = metrics.compute_metrics(features, dataset.labels, names, options(), n_classes=3)
    assert overridden == computed['discriminative']
    assert overridden != metrics.compute_metrics(features, dataset.labels, names, options())  # opt says 4
    assert metrics.MetricComputer(names, bare, n_classes=3).compute(features, dataset.labels) == overridden
    with pytest.raises(metrics.MetricInputError, match='n_classes'):
        metrics.compute_metrics(features, dataset.labels, names, bare)
