"""The three loss families and the prologue each shares, written once.

* `TripletLoss`: mine once → (T, 3) index tensor → graph zero when T = 0 → gather anchor/positive/negative.
* `SetLoss`: mine once → anchor positions → graph zero without anchors → positive and negative sets as
  index vectors or masks.
* `ClassProxyLoss`: labels checked against the number of classes, which sizes the learnable per-class
  parameters (`uniform_proxies` is their shared initialisation).
Subclasses write only their formula (`triplet_loss`, `set_loss`, `proxy_loss`).
"""
import numpy as np
import torch

from criteria.common import (check_class_range, graph_zero, label_tensor, membership_mask, position_vector,
                             triplet_indices, triplet_miner_names)


class TripletLoss(torch.nn.Module):
    """A loss over mined (anchor, positive, negative) triplets; accepts every triplet-form miner."""
    ALLOWED_MINING_OPS = triplet_miner_names()
    REQUIRES_BATCHMINER = True
    REQUIRES_OPTIM = False

    def __init__(self, name, batchminer):
        super().__init__()
        self.name = name
        self.batchminer = batchminer

    # whether `triplet_loss` reads nothing but the mined rows, so the miner may also draw from a memory
    ACCEPTS_MEMORY = False

    def forward(self, batch, labels, memory=None, **kwargs):
        """Extra keywords are ignored, as the reference's trainers pass some. With `memory` (detached
        embeddings and labels of past batches) the miner takes them as its reference rows: only the batch's
        rows are anchors, positives and negatives come from batch ∪ memory (the miner's positions index it)."""
        labels = label_tensor(labels, batch)
        if memory is None:
            triplets = triplet_indices(self.batchminer(batch, labels), batch)
        else:
            memory_embeddings, memory_labels = memory
            mined = self.batchminer(batch, labels, memory_embeddings, memory_labels)
            batch, labels = with_memory(batch, labels, memory)
            triplets = triplet_indices(mined, batch)
        if not len(triplets):
            return graph_zero(batch)
        anchor, positive, negative = batch[triplets[:, 0]], batch[triplets[:, 1]], batch[triplets[:, 2]]
        return self.triplet_loss(anchor, positive, negative, triplets, batch, labels)

    def triplet_loss(self, anchor, positive, negative, triplets, batch, labels):
        raise NotImplementedError


class SetLoss(torch.nn.Module):
    """A loss over the set form of its own miner: per anchor one positive (`SINGLE_POSITIVE`) or a positive
    set, and a negative set; ragged sets become (anchors × batch) masks."""
    MINER = None
    SINGLE_POSITIVE = True
    REQUIRES_BATCHMINER = True
    REQUIRES_OPTIM = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.ALLOWED_MINING_OPS = [cls.MINER]

    def __init__(self, name, batchminer):
        super().__init__()
        self.name = name
        self.batchminer = batchminer

    def forward(self, batch, labels, **kwargs):
        anchors, positives, negatives = self.batchminer(batch, label_tensor(labels, batch))
        anchors = position_vector(anchors, batch.device)
        if not len(anchors):
            return graph_zero(batch)
        if self.SINGLE_POSITIVE:
            positives = position_vector(positives, batch.device)
        else:
            positives = membership_mask(positives, len(anchors), len(batch), batch.device)
        negative_mask = membership_mask(negatives, len(anchors), len(batch), batch.device)
        return self.set_loss(batch, anchors, positives, negative_mask)

    def set_loss(self, batch, anchors, positives, negative_mask):
        raise NotImplementedError


class ClassProxyLoss(torch.nn.Module):
    """A loss with learnable per-class parameters, indexed by the labels; takes no miner. `n_classes` is
    given explicitly (the number of training classes, known once the data is loaded)."""
    ALLOWED_MINING_OPS = None
    REQUIRES_BATCHMINER = False
    REQUIRES_OPTIM = True
    NEEDS_N_CLASSES = True

    def __init__(self, name, n_classes):
        super().__init__()
        self.name = name
        self.n_classes = n_classes

    def no_weight_decay(self):
        """Names of the per-class parameters, which the decoupled-decay recipe (timm's `no_weight_decay`
        convention) leaves undecayed, like biases and norms."""
        return {name for name, _ in self.named_parameters()}

    def forward(self, batch, labels, **kwargs):
        labels = label_tensor(labels, batch)
        check_class_range(labels, self.n_classes, self.name)
        return self.proxy_loss(batch, labels)

    def proxy_loss(self, batch, labels):
        raise NotImplementedError


def with_memory(batch, labels, memory):
    """(batch ∪ memory embeddings, their labels): the batch first, so its rows keep their positions; the
    memory's entries are detached and carry no gradient."""
    memory_embeddings, memory_labels = memory
    return (torch.cat([batch, memory_embeddings.detach().to(batch.dtype)]),
            torch.cat([labels, label_tensor(memory_labels, memory_embeddings).to(labels.device)]))


def uniform_proxies(rows, columns):
    """The reference's class-parameter initialisation: uniform in ±1/sqrt(columns)."""
    parameter = torch.nn.Parameter(torch.empty(rows, columns))
    bound = 1. / np.sqrt(parameter.size(1))
    parameter.data.uniform_(-bound, bound)
    return parameter


def registry_constants(criterion):
    """(ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM) of a Criterion class: the reference also
    exposes them as module-level constants of each loss file, and callers written for it read those."""
    return criterion.ALLOWED_MINING_OPS, criterion.REQUIRES_BATCHMINER, criterion.REQUIRES_OPTIM
