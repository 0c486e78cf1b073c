"""`intra_random` miner, a within-class baseline: B triplets, each from
a class drawn uniformly from the batch's distinct labels, with a, p and n drawn uniformly and
independently (with replacement) from that class's positions. The "negative" shares the anchor's
class by design (a within-class baseline). Its `.name` is 'random', as in the reference (losses
check and log that name); its `key` is the registry key. With reference rows the class is drawn from the
batch's labels, a from the batch's positions of that class, p and n from its positions in batch ∪ reference.
"""
import torch

from batch_mining.common import as_triplets, candidate_labels, draw_uniform


class BatchMiner:
    key = 'intra_random'

    def __init__(self, opt):
        self.par = opt
        self.name = 'random'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None):
        labels, joined, _ = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        if labels.numel() == 0:
            return torch.zeros((0, 3), dtype=torch.int64, device=labels.device)
        classes = torch.unique(labels)
        members = classes[:, None] == joined[None, :]
        drawn_classes = torch.randint(0, classes.numel(), (labels.numel(),), device=labels.device)
        rows = members[drawn_classes].repeat_interleave(3, dim=0)
        rows[0::3, labels.numel():] = False   # the anchor is a batch row
        positions = draw_uniform(rows).view(-1, 3)
        return as_triplets(positions[:, 0], positions[:, 1], positions[:, 2])
