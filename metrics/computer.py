"""Shared computations and the metric computer.

Everything the metrics read is computed at most once per feature set, and only if some metric
requires it: ONE exact nearest-neighbour search per feature type (Euclidean on F, inner product on
the row-normalised F^), with the largest window any metric needs, shared by recall@k and every mAP
variant; one k-means per feature type, whose first assignment is read off the Euclidean search when
both are needed and the engine's distances are float32-exact; one SVD for all rho_spectrum@k.

The k-means makes as many clusters as the TRAINING set has classes (`n_classes`), whatever split is
evaluated (SOP's test set has 11316 classes but is clustered into 11318): the reference does so, and
the published NMI/F1 figures depend on it.

A split evaluated query against gallery (`query_gallery`, datasets.query_gallery) ranks the gallery for
every query: recall@k and the mAP family read the queries' hits among the gallery images (one exact
search of the queries against one index of the gallery, chunked like the one-set search). The metrics
of the embedding space as a whole -- k-means with NMI/F1, dists@, rho_spectrum@ -- read every image of
the split, queries and gallery together, labelled by class (item).
"""
import contextlib

import faiss
import numpy as np
import torch

from metrics import kmeans as kmeans_module
from metrics.errors import MetricInputError
from metrics.neighbours import neighbour_hits, query_gallery_hits
from metrics.precision import full_float32_matmul
from metrics.registry import select
from metrics.search import select_engine

EUCLIDEAN_CLUSTERING = ('kmeans', 'kmeans_nearest')


def unit_rows(x):
    """Row-wise L2 normalisation; zero rows stay zero (scikit-learn's convention, as the reference)."""
    norms = x.norm(dim=1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


class SharedComputations:
    """Lazily computed, cached inputs of the metrics, keyed by requirement name. `n_clusters`: the
    number of training classes (k of the k-means), needed only by nmi/f1/c_nmi/c_f1."""

    def __init__(self, features, target_labels, metrics, engine, n_clusters=None):
        self.features, self.target_labels = features, target_labels
        self.metrics, self.engine, self.clusters = metrics, engine, n_clusters
        self.cache = {'features': features, 'target_labels': target_labels}

    def __getitem__(self, requirement):
        if requirement not in self.cache:
            self.cache[requirement] = getattr(self, 'compute_' + requirement)()
        return self.cache[requirement]

    def required(self, requirements):
        return any(r in m.requires for m in self.metrics for r in requirements)

    def window(self, requirement):
        """Largest number of neighbours any metric reading `requirement` looks at."""
        class_sizes = torch.unique(self.target_labels, return_counts=True)[1]
        n = len(self.target_labels)
        return max(m.neighbours(n, class_sizes) for m in self.metrics if requirement in m.requires)

    def compute_features_cosine(self):
        return unit_rows(self.features)

    def compute_neighbour_hits(self):
        window, first = self.window('neighbour_hits'), None
        n = len(self.features)
        float32_lists = getattr(self.engine, 'float32_distances', lambda: False)()
        if self.required(EUCLIDEAN_CLUSTERING) and self.clusters is not None and float32_lists and \
                kmeans_module.lists_settle_first_assignment(n, self.clusters, min(window + 1, n)):
            first = kmeans_module.FirstAssignment(self.features, self.clusters)
            self.cache['kmeans_first_assignment'] = first
        return neighbour_hits(self.features, self.target_labels, window, self.engine,
                              on_chunk=first.add_chunk if first else None)

    def compute_neighbour_hits_cosine(self):
        return neighbour_hits(self['features_cosine'], self.target_labels, self.window('neighbour_hits_cosine'),
                              self.engine, inner_product=True)

    def n_clusters(self):
        if self.clusters is None:
            raise MetricInputError('nmi/f1 cluster into n_classes clusters (the number of training classes), '
                                   'but n_classes was not given.')
        return int(self.clusters)

    def compute_kmeans(self):
        k = self.n_clusters()
        if self.required(['neighbour_hits']):
            self['neighbour_hits']  # the search hands the k-means its first assignment
        first = self.cache.pop('kmeans_first_assignment', None)
        centroids, self.cache['kmeans_nearest'] = kmeans_module.kmeans(
            self.features, k, first_labels=first.labels() if first else None)
        return centroids

    def compute_kmeans_nearest(self):
        self['kmeans']
        return self.cache['kmeans_nearest']

    def compute_kmeans_cosine(self):
        """k-means on F^, its centroids row-normalised: the cosine centroids. The reference computed this
        k-means, discarded it and normalised the Euclidean centroids instead; fixed here."""
        return unit_rows(kmeans_module.kmeans(self['features_cosine'], self.n_clusters())[0])

    def compute_kmeans_nearest_cosine(self):
        """Per row of F^, the cosine centroid with the largest inner product (lowest index on ties)."""
        features, centroids = self['features_cosine'], self['kmeans_cosine']
        rows = max(1, kmeans_module.WORKSPACE_BYTES // (4 * len(centroids)))
        with full_float32_matmul(features.device):
            return torch.cat([(features[start:start + rows] @ centroids.T).argmax(dim=1)
                              for start in range(0, len(features), rows)])

    def compute_singular_values(self):
        return torch.linalg.svdvals(self.features.double()).cpu().numpy()


class QueryGalleryComputations(SharedComputations):
    """The shared computations of a split evaluated query against gallery: `query_rows` and `gallery_rows`
    (LongTensors) index the rows of `features`; the neighbour searches rank the gallery for each query."""

    def __init__(self, features, target_labels, metrics, engine, n_clusters, query_rows, gallery_rows):
        super().__init__(features, target_labels, metrics, engine, n_clusters)
        self.query_rows, self.gallery_rows = query_rows, gallery_rows

    def window(self, requirement):
        gallery_labels = self.target_labels[self.gallery_rows]
        class_sizes = torch.unique(gallery_labels, return_counts=True)[1]
        if len(class_sizes) == 0:
            return 0
        return max(m.neighbours(len(gallery_labels), class_sizes, query_in_database=False)
                   for m in self.metrics if requirement in m.requires)

    def hits(self, features, requirement, inner_product):
        q, g = self.query_rows, self.gallery_rows
        return query_gallery_hits(features[q], self.target_labels[q], features[g], self.target_labels[g],
                                  self.window(requirement), self.engine, inner_product=inner_product)

    def compute_neighbour_hits(self):
        return self.hits(self.features, 'neighbour_hits', False)

    def compute_neighbour_hits_cosine(self):
        return self.hits(self['features_cosine'], 'neighbour_hits_cosine', True)


def shared_computations(features, target_labels, metrics, engine, n_clusters, query_gallery=None):
    """One-set computations, or query-against-gallery ones when the split has roles (`query_gallery`:
    an object with boolean `is_query` / `is_gallery` masks over the rows)."""
    if query_gallery is None:
        return SharedComputations(features, target_labels, metrics, engine, n_clusters)
    rows = lambda mask: torch.as_tensor(np.flatnonzero(np.asarray(mask)), dtype=torch.long, device=features.device)
    if len(query_gallery.is_query) != len(features):
        raise MetricInputError('query/gallery roles for {} rows, {} embeddings.'.format(
            len(query_gallery.is_query), len(features)))
    return QueryGalleryComputations(features, target_labels, metrics, engine, n_clusters,
                                    rows(query_gallery.is_query), rows(query_gallery.is_gallery))


def as_inputs(features, target_labels, device):
    """Validated float32 N x D embeddings and int64 labels (N) on `device`."""
    features = torch.as_tensor(features).detach()
    if features.dim() != 2 or features.shape[0] == 0:
        raise MetricInputError('Embeddings must be a non-empty N x D matrix, got shape {}.'
                               .format(tuple(features.shape)))
    labels = torch.as_tensor(np.asarray(target_labels) if not torch.is_tensor(target_labels) else target_labels)
    labels = labels.detach().reshape(-1)
    if len(labels) != features.shape[0]:
        raise MetricInputError('{} labels for {} embeddings.'.format(len(labels), features.shape[0]))
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise MetricInputError('Labels must be integers, got {}.'.format(labels.dtype))
    features = features.to(device, torch.float32).contiguous()
    if not torch.isfinite(features).all():
        raise MetricInputError('Embeddings contain NaN or inf values.')
    return features, labels.to(device, torch.int64)


def evaluate_metrics(metrics, features, target_labels, opt, engine, n_classes=None, query_gallery=None):
    """{metric name: value} of already-built metric objects, in list order. `n_classes` (the number of
    training classes, k of the k-means) falls back to opt.n_classes when not given; `query_gallery`:
    the split's roles, for a query-against-gallery evaluation."""
    n_clusters = n_classes if n_classes is not None else getattr(opt, 'n_classes', None)
    shared = shared_computations(features, target_labels, metrics, engine, n_clusters, query_gallery)
    return {metric.name: metric(*[shared[r] for r in metric.requires]) for metric in metrics}


def compute_metrics(features, target_labels, metric_names, opt, engine=None, n_classes=None, query_gallery=None):
    """Pure function: embeddings (N x D, numpy or torch) and labels -> {metric name: value}.

    `engine` (metrics.search.FaissEngine / TorchEngine) defaults to the one --evaluate_on_gpu selects;
    `n_classes`: the number of training classes, the k of the k-means (default: opt.n_classes);
    `query_gallery`: roles of the rows (datasets.query_gallery.QueryGallery) to rank queries against the gallery.
    """
    engine = engine or select_engine(opt)
    metrics = [select(name, opt) for name in metric_names]
    features, target_labels = as_inputs(features, target_labels, engine.device)
    return evaluate_metrics(metrics, features, target_labels, opt, engine, n_classes, query_gallery)


@contextlib.contextmanager
def faiss_threads(n_threads):
    """faiss's OpenMP thread count (--kernels), restored afterwards: faiss and torch share the
    OpenMP runtime, and a lasting change would alter the training's float results after an evaluation."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(n_threads)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class MetricComputer:
    """The metrics of `metric_names`, evaluated per feature set. `n_classes`: the number of TRAINING
    classes, the k of the k-means for every evaluated split (default: opt.n_classes, for old callers)."""

    def __init__(self, metric_names, opt, n_classes=None):
        self.pars = opt
        self.n_classes = n_classes if n_classes is not None else getattr(opt, 'n_classes', None)
        self.metric_names = list(metric_names)
        self.list_of_metrics = [select(name, opt) for name in self.metric_names]
        self.requires = list(dict.fromkeys(r for metric in self.list_of_metrics for r in metric.requires))
        self.engine = select_engine(opt)

    def compute(self, features, target_labels):
        """{metric name: value} of one feature set (validated, moved to the engine's device)."""
        feats, labels = as_inputs(features, target_labels, self.engine.device)
        return evaluate_metrics(self.list_of_metrics, feats, labels, self.pars, self.engine, self.n_classes)

    def compute_of_embeddings(self, labels, features, evaltypes, *, n_threads, query_gallery=None):
        """{evaltype: {metric: value}} of embedded rows (labels N, {evaltype: N x D}, dataset order);
        `n_threads` bounds faiss's threads for the duration; `query_gallery`: the split's roles, to rank
        its queries against its gallery."""
        computed = {}
        for evaltype in evaltypes:
            feats, target_labels = as_inputs(features[evaltype], labels, self.engine.device)
            with faiss_threads(n_threads):
                computed[evaltype] = evaluate_metrics(self.list_of_metrics, feats, target_labels, self.pars,
                                                      self.engine, self.n_classes, query_gallery)
        return computed
