"""MetricComputer.compute_standard: embedding a loader and handing the rows to compute_metrics."""
import argparse

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

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


@pytest.mark.parametrize('net', [TupleNet, PlainNet])
def test_compute_standard_equals_compute_metrics_on_the_embeddings(net):
    dataset, model = TinyDataset(), net()
    loader = DataLoader(dataset, batch_size=5, shuffle=False)
    names = ['e_recall@1', 'e_recall@4', 'nmi', 'f1', 'mAP_c', 'dists@inter', 'rho_spectrum@0', 'rho_spectrum@1']
    computer = metrics.MetricComputer(names, options())
    computed, extra = computer.compute_standard(options(), model, loader, ['discriminative', 'other'], 'cpu')
    assert not model.training
    with torch.no_grad():
        embeddings = TupleNet.forward(model, dataset.images)[0].numpy()
    expected = metrics.compute_metrics(embeddings, dataset.labels, names, options())
    for evaltype in ('discriminative', 'other'):
        assert list(computed[evaltype]) == names
        for name in names:
            np.testing.assert_allclose(computed[evaltype][name], expected[name], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(extra[evaltype]['features'], embeddings, rtol=1e-6)
        assert extra[evaltype]['target_labels'].shape == (24, 1)
        assert extra[evaltype]['image_paths'] is dataset.image_paths
        assert extra[evaltype]['query_image_paths'] is None and extra[evaltype]['gallery_image_paths'] is None


def test_dict_outputs_are_picked_per_evaltype():
    class DictNet(TupleNet):
        def forward(self, x):
            embedding = super().forward(x)[0]
            return {'a': embedding, 'b': -embedding[:, :3]}, None

    loader = DataLoader(TinyDataset(), batch_size=7)
    computer = metrics.MetricComputer(['dists@inter'], options())
    _, extra = computer.compute_standard(options(), DictNet(), loader, ['a', 'b'], 'cpu')
    assert extra['a']['features'].shape == (24, 6) and extra['b']['features'].shape == (24, 3)


def test_requires_is_the_ordered_union():
    computer = metrics.MetricComputer(['e_recall@1', 'nmi', 'f1', 'c_recall@1'], options())
    assert computer.requires == ['neighbour_hits', 'kmeans_nearest', 'target_labels', 'neighbour_hits_cosine']


def test_thread_count_is_restored_after_the_evaluation():
    """faiss runs with --kernels threads, but torch (same OpenMP runtime) trains on with its own count."""
    threads = torch.get_num_threads()  # 1 under the single_faiss_thread fixture
    opt = options()
    opt.kernels = threads + 2
    computer = metrics.MetricComputer(['e_recall@1'], opt)
    computer.compute_standard(opt, TupleNet(), DataLoader(TinyDataset(), batch_size=8), ['discriminative'], 'cpu')
    assert torch.get_num_threads() == threads


def test_n_classes_is_an_argument_and_opt_n_classes_only_its_fallback():
    """k of the k-means = the number of training classes, passed explicitly; opt.n_classes serves old callers."""
    dataset, model = TinyDataset(), TupleNet()
    loader = DataLoader(dataset, batch_size=8)
    names = ['nmi', 'f1']
    bare = argparse.Namespace(rho_spectrum_embed_dim=6, evaluate_on_gpu=False, kernels=1)
    computed, extra = metrics.MetricComputer(names, bare, n_classes=3).compute_standard(
        bare, model, loader, ['discriminative'], 'cpu')
    via_opt = options()
    via_opt.n_classes = 3
    old_style, _ = metrics.MetricComputer(names, via_opt).compute_standard(
        via_opt, model, loader, ['discriminative'], 'cpu')
    assert computed == old_style
    features = extra['discriminative']['features']
    overridden = metrics.compute_metrics(features, dataset.labels, names, options(), n_classes=3)
    assert overridden == computed['discriminative']
    assert overridden != metrics.compute_metrics(features, dataset.labels, names, options())  # opt says 4
    assert metrics.MetricComputer(names, bare, n_classes=3).compute(features, dataset.labels) == overridden
    with pytest.raises(metrics.MetricInputError, match='n_classes'):
        metrics.compute_metrics(features, dataset.labels, names, bare)
