"""Embedding an evaluation loader: the same code for the per-epoch passes, the storage samplers and
evaluate.py, so their numbers agree bit for bit.

Images are normalised on the device (uint8 batches of the fast pipeline) and the backbone runs under
the run's autocast setting; features come back as float32 CPU tensors in loader order. Under data
parallelism each process embeds its own disjoint shard and the rows are gathered in dataset order.
"""
import torch

from runtime import distributed


def identity(images):
    return images


class Embedder:
    """`progress`: a `(total, description, unit) -> Progress` maker (utilities.progress.factory), or None
    for silent passes."""

    def __init__(self, model, device, normalise=identity, precision=None, world=None, progress=None):
        self.model, self.device = model, device
        self.normalise = normalise
        self.precision = precision
        self.world = world
        self.progress = progress

    def autocast(self):
        import contextlib
        return self.precision.autocast() if self.precision is not None else contextlib.nullcontext()

    def forward(self, images):
        images = self.normalise(images.to(self.device, non_blocking=True))
        if self.precision is not None:
            images = self.precision.prepare_images(images)
        with self.autocast():
            return self.model(images)

    def __call__(self, loader, evaltypes):
        """(labels N, {evaltype: float32 N x D CPU tensor}, indices N), rows in dataset order."""
        self.model.eval()
        labels, indices, features = [], [], {evaltype: [] for evaltype in evaltypes}
        progress = None
        if self.progress is not None:
            progress = self.progress(len(loader), 'Embedding', 'batch')
        with torch.no_grad():
            for step, batch in enumerate(loader):
                labels.append(torch.as_tensor(batch[0]).reshape(-1))
                indices.append(torch.as_tensor(batch[2]).reshape(-1))
                output = self.forward(batch[1])
                if isinstance(output, tuple):
                    output = output[0]
                for evaltype in evaltypes:
                    chosen = output[evaltype] if isinstance(output, dict) else output
                    features[evaltype].append(chosen.detach().to('cpu', torch.float32))
                if progress is not None:
                    progress.update(step)
        if progress is not None:
            progress.close()
        labels, indices = torch.cat(labels), torch.cat(indices)
        features = {evaltype: torch.cat(rows) for evaltype, rows in features.items()}
        if self.world is not None and self.world.enabled:
            n = len(getattr(loader.dataset, 'dataset', loader.dataset))
            labels = distributed.gather_rows(labels, self.world, n)
            indices = distributed.gather_rows(indices, self.world, n)
            features = {k: distributed.gather_rows(v, self.world, n) for k, v in features.items()}
        return labels, features, indices
