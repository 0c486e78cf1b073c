"""`intra_random` miner, a within-class baseline: B triplets, each from
a class drawn uniformly from the batch's distinct labels, with a, p and n drawn uniformly and
independently (with replacement) from that class's positions. The "negative" shares the anchor's
class by design (a within-class baseline). Its `.name` is 'random', as in the reference (losses
check and log that name); its `key` is the registry key.
"""
import torch

from batch_mining.common import as_triplets, batch_labels, draw_uniform


class BatchMiner:
    key = 'intra_random'

    def __init__(self, opt):
        self.par = opt
        self.name = 'random'

    def __call__(self, batch, labels):
        labels = batch_labels(labels, batch)
        if labels.numel() == 0:
            return torch.zeros((0, 3), dtype=torch.int64, device=labels.device)
        classes = torch.unique(labels)
        members = classes[:, None] == labels[None, :]
        drawn_classes = torch.randint(0, classes.numel(), (labels.numel(),), device=labels.device)
        positions = draw_uniform(members[drawn_classes].repeat_interleave(3, dim=0)).view(-1, 3)
        return as_triplets(positions[:, 0], positions[:, 1], positions[:, 2])
