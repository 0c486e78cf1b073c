"""Per-sample randomness of the fast pipeline and how the epoch reaches the dataset.

The augmentation of sample `idx` in epoch `e` is drawn from a generator seeded by (seed, e, idx), so the
augmented images do not depend on the worker count, the world size or the batch a sample lands in.
Workers may be persistent (attributes set in the main process never reach them), so the epoch travels
with the index: a dataset key is `idx` (epoch 0) or `(idx, epoch)`.
"""
import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(value):
    """One splitmix64 step: a cheap, well-mixed 64-bit hash (the same in every process, unlike `hash`)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def sample_seed(seed, epoch, index):
    """A 63-bit seed from (seed, epoch, index); neighbouring triples give unrelated seeds."""
    state = 0
    for part in (seed, epoch, index):
        state = _splitmix64(state ^ (int(part) & _MASK64))
    return state >> 1


def sample_generator(seed, epoch, index):
    generator = torch.Generator()
    generator.manual_seed(sample_seed(seed, epoch, index))
    return generator


def split_key(key):
    """`idx` -> (idx, 0); `(idx, epoch)` -> (idx, epoch); numpy / tensor integers become ints."""
    if isinstance(key, (tuple, list)):
        index, epoch = key
        return int(index), int(epoch)
    return int(key), 0


class EpochTaggedBatchSampler:
    """Wraps a batch sampler so that its batches are lists of (idx, epoch); `set_epoch(e)` before each
    epoch's `iter(loader)`. Length and every other attribute are the wrapped sampler's."""

    def __init__(self, batch_sampler, epoch=0):
        self.batch_sampler = batch_sampler
        self.epoch = int(epoch)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __iter__(self):
        epoch = self.epoch
        for batch in self.batch_sampler:
            yield [(int(index), epoch) for index in batch]

    def __len__(self):
        return len(self.batch_sampler)

    def __getattr__(self, name):
        if name == 'batch_sampler':  # not yet set (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)
