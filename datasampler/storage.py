"""Embedding storage of the training set and its lifecycle for the storage-based samplers.

The training loop calls `create_storage` once, `precompute_indices` at the start of every epoch,
`replace_storage_entries` after every optimiser step (when `update_storage`) and, with `--data_idx_full_prec`,
`full_storage_update` at the start of every epoch > 0.

Under data parallelism (a `world` from runtime.distributed) each rank embeds its shard of the training images
and the rows are gathered, so every rank holds the identical full storage and, seeded alike, draws the
identical batches.
"""
import torch

from datasampler.base import BaseBatchSampler, SamplerConfigError
from runtime import distributed

# Upper bound on the bytes of the per-chunk work tensors: the epoch's batches are computed in chunks of calls
# whose big-batch matrices fit in it (at least one call per chunk), so memory does not grow with N or the epoch.
CHUNK_BYTES = 64 * 2 ** 20


class StorageSampler(BaseBatchSampler):
    """Common state: `storage` (N × D float tensor on the CPU, row g = embedding of global index g) and the epoch's
    batches.

    The reference spreads an epoch over 16 unseeded joblib workers, so its runs do not repeat; here the epoch's
    `sampler_length` batches are computed in vectorised chunks from the global torch generator, which the trainer
    seeds.
    """

    requires_storage = True

    def __init__(self, opt, image_dict, image_list=None):
        super().__init__(opt, image_dict, image_list)
        self.big_batch_size = opt.data_batchmatch_bigbs
        self.n_candidates = opt.data_batchmatch_ncomps
        self.update_storage = not opt.data_storage_no_update
        self.lowproj_dim = opt.data_sampler_lowproj_dim
        self.momentum = opt.data_mb_mom
        self.bank_lr = opt.data_mb_lr
        self.n_images = len(self.classes.class_of)
        self.storage = None
        self.delta_storage = None
        self.epoch_indices = None

    def _embed(self, eval_loader, model, device, world=None, embedder=None):
        """Storage rows in eval mode, without gradients; row g comes from the item with dataset index g (field 2).
        With an enabled `world`, this rank embeds its contiguous shard of the loader's dataset and the rows and
        indices of all shards are gathered in dataset order. `embedder` (the trainer's evaluation embedding:
        normalisation on the device, autocast, already sharded and gathered) replaces the plain forward."""
        if embedder is not None:
            _, features, indices = embedder(eval_loader, ['storage'])
            return self._ordered(features['storage'], indices.long())
        world = world if world is not None else distributed.World()
        model.eval()
        model.to(device)
        rows, indices = [], []
        with torch.no_grad():
            for batch in distributed.shard_loader(eval_loader, world):
                output = model(batch[1].float().to(device))
                rows.append((output[0] if isinstance(output, (tuple, list)) else output).detach().float().cpu())
                indices.append(torch.as_tensor(batch[2], dtype=torch.long))
        if not rows:
            raise SamplerConfigError('create_storage: the evaluation loader yielded no batch{}'.format(
                ' on rank {}'.format(world.rank) if world.enabled else ''))
        rows, indices = torch.cat(rows), torch.cat(indices)
        if world.enabled:
            n_items = len(eval_loader.dataset)
            rows, indices = distributed.gather_rows(rows, world, n_items), distributed.gather_rows(indices, world,
                                                                                                   n_items)
        return self._ordered(rows, indices)

    def _ordered(self, rows, indices):
        """Row g of the storage is the embedding of the item with dataset index g."""
        if len(indices) != self.n_images or not torch.equal(indices.sort().values, torch.arange(self.n_images)):
            raise SamplerConfigError(f'create_storage: the evaluation loader must cover the {self.n_images} training '
                                     f'images once each (got {len(indices)} items)')
        storage = torch.empty_like(rows)
        storage[indices] = rows
        return storage

    def create_storage(self, eval_loader, model, device, world=None, embedder=None):
        """Embed the training images with the evaluation transforms (sharded over `world`); leaves the model in
        eval mode."""
        self.storage = self._embed(eval_loader, model, device, world, embedder)

    def full_storage_update(self, eval_loader, model, device, world=None, embedder=None):
        """Recompute the storage at the start of an epoch (what the reference intends; its own code crashes here).

        With `--data_mb_mom` m > 0 a running delta smooths the refresh: delta ← m·delta + (1−m)·(new − old),
        storage ← new + `--data_mb_lr`·delta, delta starting at zeros; otherwise storage ← new.
        """
        new = self._embed(eval_loader, model, device, world, embedder)
        if self.momentum > 0:
            if self.delta_storage is None:
                self.delta_storage = torch.zeros_like(new)
            self.delta_storage = self.momentum * self.delta_storage + (1 - self.momentum) * (new - self.storage)
            new = new + self.bank_lr * self.delta_storage
        self.storage = new

    def replace_storage_entries(self, embeddings, indices):
        """`storage[indices] = embeddings` after an optimiser step; a repeated index: one write wins. Under data
        parallelism pass the gathered global batch (embeddings and indices), so every rank's storage stays equal."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        self.storage[indices] = embeddings.detach().to(self.storage.device, self.storage.dtype)

    def state_dict(self):
        """What a resumed run needs to continue with the same storage (the trainer saves it after every epoch)."""
        return {'storage': self.storage, 'delta_storage': self.delta_storage}

    def load_state_dict(self, state):
        self.storage, self.delta_storage = state['storage'], state['delta_storage']

    def precompute_indices(self):
        """Build the epoch's `sampler_length` batches from the current storage."""
        if self.storage is None:
            raise RuntimeError(f'{self.name}: create_storage must run before precompute_indices')
        chunk = max(1, CHUNK_BYTES // self._bytes_per_call())
        batches = [self._batch_chunk(min(chunk, self.sampler_length - start))
                   for start in range(0, self.sampler_length, chunk)]
        self.epoch_indices = torch.cat(batches).tolist()

    def __iter__(self):
        if self.epoch_indices is None:
            raise RuntimeError(f'{self.name}: precompute_indices must run before iterating the sampler')
        yield from self.epoch_indices

    def _project(self, embeddings):
        """A fresh random bias-free linear map D → `--data_sampler_lowproj_dim` per call (leading index), nn.Linear's
        default init U(−1/√D, 1/√D); identity when the flag is ≤ 0 (an optional random projection)."""
        if self.lowproj_dim <= 0:
            return embeddings
        n_calls, _, dim = embeddings.shape
        bound = dim ** -0.5
        uniform = torch.rand(n_calls, dim, self.lowproj_dim, dtype=embeddings.dtype, device=embeddings.device)
        return embeddings @ ((2 * uniform - 1) * bound)

    @property
    def embed_dim(self):
        return self.lowproj_dim if self.lowproj_dim > 0 else self.storage.shape[1]

    def _bytes_per_call(self):
        """Bytes of the work tensors one call (one batch) needs; sets the chunk size."""
        raise NotImplementedError

    def _batch_chunk(self, n_calls):
        """`n_calls` batches as an n_calls × bs tensor of global dataset indices."""
        raise NotImplementedError
