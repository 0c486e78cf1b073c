"""`semihard` miner (spec mining_sampling.md A.2): positive uniform over P(i); negative uniform over
the semi-hard band d_ip < d_in < d_ip + margin of the drawn positive, else uniform over N(i).

The margin is `opt.loss_<loss_source>_margin` (training.md §2: `loss_source` is --loss without a
trailing `_lsd`), read when the miner is built.
Deviation (D-8): where the reference crashes on an anchor with no positive or no negative, that
anchor is skipped, so T < B only in batches the reference cannot mine.
"""
import torch

from batch_mining.common import (MiningError, as_triplets, batch_labels, draw_uniform, label_masks,
                                 pairwise_distances, read_option)


def loss_source(opt):
    """The loss whose flags the miner reads: `opt.loss_source`, else --loss without `_lsd`."""
    source = getattr(opt, 'loss_source', None)
    if source is None:
        loss = read_option(opt, 'loss')
        source = loss[:-len('_lsd')] if loss.endswith('_lsd') else loss
    return source


class BatchMiner:
    def __init__(self, opt):
        self.par = opt
        flag = 'loss_{}_margin'.format(loss_source(opt))
        if not hasattr(opt, flag):
            raise MiningError('--batch_mining semihard reads its margin from --{}, which does not exist '
                              'for this --loss; choose another miner'.format(flag))
        self.margin = getattr(opt, flag)
        self.name = 'semihard'

    def __call__(self, batch, labels, return_distances=False):
        labels = batch_labels(labels, batch)
        distances = pairwise_distances(batch)
        _, positive, negative = label_masks(labels)
        anchors = (positive.any(dim=1) & negative.any(dim=1)).nonzero().squeeze(1)
        positives = draw_uniform(positive[anchors])
        row_distances, row_negative = distances[anchors], negative[anchors]
        anchor_positive = row_distances.gather(1, positives[:, None])
        semihard = row_negative & (row_distances > anchor_positive) & (row_distances < anchor_positive + self.margin)
        pool = torch.where(semihard.any(dim=1, keepdim=True), semihard, row_negative)
        triplets = as_triplets(anchors, positives, draw_uniform(pool))
        if return_distances:
            return triplets, distances.cpu().numpy()
        return triplets
