"""Cost of the default evaluation against one exact 1001-NN faiss search (target: at most 1.3x).

Builds SOP-size synthetic embeddings (default 60 000 x 128 in 11 318 classes of 2+ samples, unit
norm, class centres drawn around 12 super-classes and noisy enough that recall@1 is about 0.75),
then in one run:
  * the default --evaluation_metrics list through metrics.computer, with a breakdown into the
    shared computations (one neighbour search, one k-means, one SVD) and each metric;
  * the yardstick: one exact faiss IndexFlatL2 search of all embeddings for their 1001 nearest.
It prints wall-clock and process CPU seconds (CPU time is the steadier figure on a shared machine),
the ratio evaluation / yardstick for both, the k-means' work per update (the k-means' first
assignment comes out of the neighbour search, so its first update searches every point), and the
peak resident memory of the process after the evaluation and after the yardstick.

    python3 bench/eval.py [--n 60000 --dim 128 --classes 11318 --threads 2 --engine faiss|torch]
"""
import argparse
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import metrics  # noqa: E402
from metrics import kmeans as kmeans_module  # noqa: E402
from metrics.computer import SharedComputations, as_inputs  # noqa: E402
from metrics.search import FaissEngine, TorchEngine  # noqa: E402


def sop_like_embeddings(n, dim, n_classes, noise=1.2, seed=0):
    """Unit-norm embeddings: class centres around 12 super-class centres, Gaussian noise of norm ~noise."""
    rng = np.random.default_rng(seed)
    counts = 2 + rng.multinomial(n - 2 * n_classes, np.full(n_classes, 1.0 / n_classes))
    labels = np.repeat(np.arange(n_classes), counts)
    supers = rng.standard_normal((12, dim))
    centres = supers[rng.integers(0, 12, n_classes)] + 1.2 * rng.standard_normal((n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + noise * rng.standard_normal((n, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


class Clock:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self):
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--n', type=int, default=60000)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--classes', type=int, default=11318)
    parser.add_argument('--threads', type=int, default=2, help='faiss and torch threads')
    parser.add_argument('--engine', choices=('faiss', 'torch'), default='faiss')
    parser.add_argument('--device', default='cpu', help='device of the torch engine')
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    x, labels = sop_like_embeddings(args.n, args.dim, args.classes)
    opt = argparse.Namespace(rho_spectrum_embed_dim=args.dim, evaluate_on_gpu=False)
    engine = FaissEngine() if args.engine == 'faiss' else TorchEngine(args.device)
    print('{} x {} embeddings, {} classes, {} threads, engine {}'.format(args.n, args.dim, args.classes,
                                                                        args.threads, engine.name))
    rss_before = peak_rss_mib()

    searched = []
    update = kmeans_module._Assignment.update

    def counting_update(self, *update_args):
        result = update(self, *update_args)
        searched.append(result.n_searched)
        return result
    kmeans_module._Assignment.update = counting_update

    metric_objects = [metrics.select(name, opt) for name in metrics.DEFAULT_METRICS]
    rows = []
    clock = Clock()
    features, target_labels = as_inputs(x, labels, engine.device)
    shared = SharedComputations(features, target_labels, metric_objects, engine, n_clusters=args.classes)
    for requirement in dict.fromkeys(r for metric in metric_objects for r in metric.requires):
        part = Clock()
        shared[requirement]
        rows.append(('shared: ' + requirement, part.read(), ''))
    for metric in metric_objects:
        part = Clock()
        value = metric(*[shared[r] for r in metric.requires])
        shown = 'array[{}]'.format(len(value)) if isinstance(value, np.ndarray) else '{:.4f}'.format(value)
        rows.append((metric.name, part.read(), shown))
    total = clock.read()

    rss_evaluation = peak_rss_mib()

    clock = Clock()
    index = faiss.IndexFlatL2(args.dim)
    index.add(x)
    index.search(x, 1001)
    del index
    yardstick = clock.read()
    print('yardstick: exact faiss 1001-NN search: {:.1f} s wall, {:.1f} s CPU'.format(*yardstick))

    print('\n{:<36}{:>10}{:>10}  value'.format('step', 'wall s', 'CPU s'))
    for name, (wall, cpu), shown in rows:
        print('{:<36}{:>10.2f}{:>10.2f}  {}'.format(name, wall, cpu, shown))
    print('{:<36}{:>10.2f}{:>10.2f}'.format('default evaluation, total', *total))
    print('\nk-means work per update, in points searched against all {} centroids: {}'.format(
        args.classes, [int(round(points)) for points in searched]))
    print('ratio evaluation / yardstick: {:.2f}x wall, {:.2f}x CPU (target <= 1.3x)'.format(
        total[0] / yardstick[0], total[1] / yardstick[1]))
    print('peak RSS: {:.0f} MiB with the embeddings, {:.0f} MiB after the evaluation, {:.0f} MiB after the '
          'yardstick'.format(rss_before, rss_evaluation, peak_rss_mib()))


if __name__ == '__main__':
    main()
