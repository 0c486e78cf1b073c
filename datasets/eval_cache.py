"""`--eval_cache {cpu,gpu}`: the evaluation crops are deterministic, so the first pass keeps every batch
(images as yielded, uint8 under the fast pipeline, labels and indices) in one preallocated tensor and
later passes yield the same batches from memory: pure network time. Only for evaluation loaders
(deterministic transforms, fixed order); a training loader would replay one epoch's augmentation.
"""
import torch

LOCATIONS = ('none', 'cpu', 'gpu')


class CachedLoader:
    """Iterable with `len()` and `.dataset`, yielding (labels, images, indices) batches of the same sizes
    and order as `loader`. `location`: 'cpu' (pinned memory when CUDA is there) or 'gpu' (on `device`).
    A first pass that stops early caches nothing; the next pass reads `loader` again."""

    def __init__(self, loader, location, device=None):
        if location not in ('cpu', 'gpu'):
            raise ValueError('--eval_cache must be one of {}, got {!r}'.format(', '.join(LOCATIONS), location))
        device = torch.device(device if device is not None else 'cpu')
        if location == 'gpu' and device.type == 'cpu':
            raise ValueError('--eval_cache gpu needs a CUDA device; use --eval_cache cpu')
        self.loader, self.location, self.device = loader, location, device
        self.dataset = loader.dataset
        self.batch_sizes = None
        self.labels = self.images = self.indices = None

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        """batch_size, num_workers, collate_fn, pin_memory ... are the wrapped loader's (for code that
        rebuilds a loader from them; wrap the final, e.g. per-rank, loader to keep the cache)."""
        if name == 'loader':
            raise AttributeError(name)
        return getattr(self.loader, name)

    @property
    def is_filled(self):
        return self.batch_sizes is not None

    def _storage(self, like, n_rows):
        if self.location == 'gpu':
            return torch.empty((n_rows,) + tuple(like.shape[1:]), dtype=like.dtype, device=self.device)
        pin = torch.cuda.is_available()
        return torch.empty((n_rows,) + tuple(like.shape[1:]), dtype=like.dtype, pin_memory=pin)

    def _fill(self):
        n_rows = len(self.dataset)
        labels = images = indices = None
        sizes, start = [], 0
        for batch in self.loader:
            batch_labels, batch_images, batch_indices = (torch.as_tensor(part) for part in batch[:3])
            if images is None:
                labels = self._storage(batch_labels, n_rows)
                images = self._storage(batch_images, n_rows)
                indices = self._storage(batch_indices, n_rows)
            stop = start + batch_images.shape[0]
            labels[start:stop].copy_(batch_labels)
            images[start:stop].copy_(batch_images)
            indices[start:stop].copy_(batch_indices)
            sizes.append(stop - start)
            start = stop
            yield batch
        self.labels, self.images, self.indices = labels, images, indices
        self.batch_sizes = sizes

    def _replay(self):
        start = 0
        for size in self.batch_sizes:
            stop = start + size
            yield self.labels[start:stop], self.images[start:stop], self.indices[start:stop]
            start = stop

    def __iter__(self):
        return self._replay() if self.is_filled else self._fill()


def cached(loader, location, device=None):
    """`loader` itself for --eval_cache none, else a CachedLoader."""
    return loader if location == 'none' else CachedLoader(loader, location, device)
