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

At the scale benchmarks (`--preset`), the evaluation of the benchmark's customary metrics against one
exact search of the same data for the same number of neighbours, and the peak memory the evaluation
adds (ru_maxrss after it minus before it), next to the size of an n x n float32 distance matrix:
  * inaturalist: 136 093 x 128 test embeddings in 2 452 long-tailed classes (class sizes ~ rank^-0.5,
    at least 2; the Smooth-AP test split's counts), one set: e_recall@1/4/16/32 and mAP@R;
  * inshop: 14 218 queries against 12 612 gallery embeddings of 3 985 items (at least one query and one
    gallery image each), query against gallery: e_recall@1/10/20/30/40 and mAP@R.

    python3 bench/eval.py --preset inaturalist|inshop [--threads 2 --engine faiss|torch --metrics ...]
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
    return embeddings_of(np.repeat(np.arange(n_classes), counts), dim, noise, rng)


def embeddings_of(labels, dim, noise, rng):
    """Unit-norm embeddings of `labels` around per-class centres (themselves around 12 super-classes)."""
    n, n_classes = len(labels), int(labels.max()) + 1
    supers = rng.standard_normal((12, dim))
    centres = supers[rng.integers(0, 12, n_classes)] + 1.2 * rng.standard_normal((n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + noise * rng.standard_normal((n, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def memory_status_mib(field):
    """VmRSS (resident now) or VmHWM (peak resident since the last reset) of this process, in MiB."""
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


def reset_peak_memory():
    """Restart the peak (VmHWM) at the current resident size (Linux: clear_refs 5)."""
    try:
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
        return True
    except OSError:
        return False


def peak_added_mib(run):
    """(result of run(), MiB the peak resident size rose above the resident size before it)."""
    reset = reset_peak_memory()
    before = memory_status_mib('VmRSS') if reset else peak_rss_mib()
    result = run()
    return result, (memory_status_mib('VmHWM') if reset else peak_rss_mib()) - before


def long_tailed_counts(n, n_classes, exponent, rng, minimum=2):
    """Class sizes summing to n: `minimum` each, the rest drawn with probability ~ rank^-exponent."""
    share = np.arange(1, n_classes + 1, dtype=np.float64) ** -exponent
    return minimum + rng.multinomial(n - minimum * n_classes, share / share.sum())


def inaturalist_like(n=136093, dim=128, n_classes=2452, exponent=0.5, noise=1.2, seed=0):
    rng = np.random.default_rng(seed)
    counts = long_tailed_counts(n, n_classes, exponent, rng)
    return embeddings_of(np.repeat(np.arange(n_classes), counts), dim, noise, rng)


def inshop_like(n_queries=14218, n_gallery=12612, n_items=3985, dim=128, noise=1.2, seed=0):
    """(embeddings, labels, is_query): every item has at least one query and one gallery image."""
    rng = np.random.default_rng(seed)
    query_counts = long_tailed_counts(n_queries, n_items, 0.0, rng, minimum=1)
    gallery_counts = long_tailed_counts(n_gallery, n_items, 0.0, rng, minimum=1)
    labels = np.concatenate([np.repeat(np.arange(n_items), query_counts),
                             np.repeat(np.arange(n_items), gallery_counts)])
    is_query = np.arange(len(labels)) < n_queries
    x, labels = embeddings_of(labels, dim, noise, rng)
    return x, labels, is_query


PRESET_METRICS = {'inaturalist': ['e_recall@1', 'e_recall@4', 'e_recall@16', 'e_recall@32', 'mAP@R'],
                  'inshop': ['e_recall@1', 'e_recall@10', 'e_recall@20', 'e_recall@30', 'e_recall@40', 'mAP@R']}


def scale_bench(args, engine):
    """Customary metrics of a scale benchmark vs one exact faiss search for as many neighbours."""
    from datasets.query_gallery import QueryGallery
    from metrics.computer import shared_computations
    if args.preset == 'inaturalist':
        x, labels = inaturalist_like(dim=args.dim)
        roles = None
    else:
        x, labels, is_query = inshop_like(dim=args.dim)
        roles = QueryGallery(is_query, ~is_query)
    names = args.metrics or PRESET_METRICS[args.preset]
    opt = argparse.Namespace(rho_spectrum_embed_dim=args.dim, evaluate_on_gpu=False)
    metric_objects = [metrics.select(name, opt) for name in names]
    sizes = np.bincount(labels)
    print('{}: {} x {} embeddings, {} classes (sizes {}..{}, median {}), {}, {} threads, engine {}'.format(
        args.preset, len(x), args.dim, len(sizes), sizes.min(), sizes.max(), int(np.median(sizes)),
        'one set' if roles is None else '{} queries against {} gallery'.format(roles.is_query.sum(),
                                                                               roles.is_gallery.sum()),
        args.threads, engine.name))

    def evaluation():
        clock = Clock()
        features, target_labels = as_inputs(x, labels, engine.device)
        shared = shared_computations(features, target_labels, metric_objects, engine, len(sizes), roles)
        values = {metric.name: metric(*[shared[r] for r in metric.requires]) for metric in metric_objects}
        return values, clock.read(), shared.window('neighbour_hits')
    (values, total, window), evaluation_memory = peak_added_mib(evaluation)
    if roles is None:
        queries = base = x
        k = window + 1       # the one-set search also finds the query itself
    else:
        queries, base, k = x[roles.is_query], x[roles.is_gallery], window

    def exact_search():
        clock = Clock()
        index = faiss.IndexFlatL2(args.dim)
        index.add(np.ascontiguousarray(base))
        index.search(np.ascontiguousarray(queries), k)
        return clock.read()
    yardstick, yardstick_memory = peak_added_mib(exact_search)
    print(' | '.join('{}: {:.4f}'.format(name, value) for name, value in values.items()))
    print('evaluation: {:.1f} s wall, {:.1f} s CPU; yardstick (one exact faiss {}-NN search of {} queries '
          'against {}): {:.1f} s wall, {:.1f} s CPU'.format(total[0], total[1], k, len(queries), len(base),
                                                           *yardstick))
    print('ratio evaluation / yardstick: {:.2f}x wall, {:.2f}x CPU'.format(total[0] / yardstick[0],
                                                                       total[1] / yardstick[1]))
    n_by_n = len(queries) * len(base) * 4 / 2 ** 20
    print('peak memory added: evaluation {:.0f} MiB, yardstick {:.0f} MiB (its {} x {} result alone is {:.0f} MiB); '
          'embeddings {:.0f} MiB; an n x n float32 distance matrix would be {:.0f} MiB ({:.0f}x the evaluation\'s)'
          .format(evaluation_memory, yardstick_memory, len(queries), k, len(queries) * k * 12 / 2 ** 20,
                  x.nbytes / 2 ** 20, n_by_n, n_by_n / max(evaluation_memory, 1)))


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
    parser.add_argument('--preset', choices=('sop', 'inaturalist', 'inshop'), default='sop',
                        help='sop: the default evaluation at SOP size (the flags above); inaturalist / inshop: '
                             'the customary metrics at that benchmark\'s test size')
    parser.add_argument('--metrics', nargs='+', default=None, help='metrics of a --preset run')
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    if args.preset != 'sop':
        scale_bench(args, FaissEngine() if args.engine == 'faiss' else TorchEngine(args.device))
        return
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
