"""Cross-batch memory (XBM, Wang et al., CVPR 2020): a FIFO of the detached embeddings and labels of past
(global) batches, which a pair-based loss compares the current batch against besides the batch itself.

It composes onto any ranking loss whose class sets `ACCEPTS_MEMORY`: the loss is called as
`ranking(batch, labels, memory=(embeddings, labels))` and never pairs a sample with itself, since the
memory only holds earlier batches (the current one is added after its loss is computed). Under torchrun
the objective sees the gathered global batch, so the memory holds it too, identical on every rank.
"""
import torch

from criteria.common import CriterionError, label_tensor


class CrossBatchMemory(torch.nn.Module):
    """`size` slots written in a ring; from training iteration `start` on, each call uses the memory's
    current contents and then adds the batch (so at iteration `start` the memory is still empty).

    A module: the slots are its buffers `embeddings` (size, D) and `labels` (size,), allocated with the first
    batch's dtype and device (None before), and its counters are the module's extra state, so `.to()` moves the
    slots and `state_dict()` holds everything a resumed run needs (`embeddings`, `labels`, `_extra_state`)."""

    def __init__(self, size, start=0):
        super().__init__()
        if size < 1 or start < 0:
            raise CriterionError('cross-batch memory: size must be at least 1 and start not negative '
                                 '(got size {}, start {})'.format(size, start))
        self.size = int(size)
        self.start = int(start)
        self.register_buffer('embeddings', None)   # (size, D)
        self.register_buffer('labels', None)       # (size,) int64
        self.filled = 0          # slots holding an entry
        self.next_slot = 0       # where the next entry goes
        self.iteration = 0       # training iterations seen, the memory's own clock for `start`

    def __len__(self):
        return self.filled

    def contents(self):
        """(embeddings, labels) of the filled slots, in slot order (a view, no copy)."""
        return self.embeddings[:self.filled], self.labels[:self.filled]

    def place_like(self, embeddings):
        """Move the slots to the embeddings' device and dtype (a restored memory arrives on the CPU)."""
        if self.embeddings.device != embeddings.device or self.embeddings.dtype != embeddings.dtype:
            self.embeddings = self.embeddings.to(embeddings.device, embeddings.dtype)
            self.labels = self.labels.to(embeddings.device)

    def enqueue(self, embeddings, labels):
        """Write a batch into the next slots, wrapping around; only the last `size` rows of a batch larger
        than the memory are kept."""
        embeddings = embeddings.detach()
        labels = label_tensor(labels, embeddings)
        if self.embeddings is None:
            self.embeddings = embeddings.new_zeros(self.size, embeddings.shape[1])
            self.labels = labels.new_zeros(self.size)
        self.place_like(embeddings)
        embeddings, labels = embeddings[-self.size:], labels[-self.size:]
        slots = (self.next_slot + torch.arange(len(labels), device=labels.device)) % self.size
        self.embeddings[slots] = embeddings
        self.labels[slots] = labels
        self.next_slot = (self.next_slot + len(labels)) % self.size
        self.filled = min(self.size, self.filled + len(labels))

    def loss(self, ranking, embeddings, labels):
        """The ranking loss of this training iteration: against the batch alone before `start` or while the
        memory is empty, else against batch ∪ memory; from `start` on the batch is then enqueued."""
        iteration, self.iteration = self.iteration, self.iteration + 1
        if iteration < self.start:
            return ranking(embeddings, labels)
        if self.filled:
            self.place_like(embeddings)
            value = ranking(embeddings, labels, memory=self.contents())
        else:
            value = ranking(embeddings, labels)
        self.enqueue(embeddings, labels)
        return value

    def forward(self, ranking, embeddings, labels):
        return self.loss(ranking, embeddings, labels)

    def get_extra_state(self):
        return {'size': self.size, 'start': self.start, 'filled': self.filled, 'next_slot': self.next_slot,
                'iteration': self.iteration}

    def set_extra_state(self, state):
        if state['size'] != self.size:
            raise CriterionError('cross-batch memory: the saved memory has {} slots, this run --xbm_size {}'
                                 .format(state['size'], self.size))
        self.filled, self.next_slot, self.iteration = state['filled'], state['next_slot'], state['iteration']

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """The slots are allocated lazily: take the saved ones' shape, dtype and device before torch copies them
        (a memory saved before its first batch has none)."""
        if prefix + '_extra_state' not in state_dict:
            raise CriterionError('cross-batch memory: the resume state holds no memory (saved by a run '
                                 'without --xbm_size)')
        for name in ('embeddings', 'labels'):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @staticmethod
    def legacy_state(state):
        """A memory entry of the resume files written beside the criterion (a plain dict of counters and
        tensors) as this module's state_dict."""
        if state is None:
            return {}
        converted = {'_extra_state': {key: state[key] for key in ('size', 'start', 'filled', 'next_slot', 'iteration')}}
        for name in ('embeddings', 'labels'):
            if state.get(name) is not None:
                converted[name] = state[name]
        return converted


def accepts_memory(criterion):
    """Whether a Criterion class (or instance) can pair its batch with a memory."""
    return bool(getattr(criterion, 'ACCEPTS_MEMORY', False))
