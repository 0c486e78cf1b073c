"""`semihard` miner: positive uniform over P(i); negative uniform over the semi-hard band
d_ip < d_in < d_ip + margin of the drawn positive, else uniform over N(i).

The margin is `--loss_<base loss>_margin` of the loss the miner serves (`triplet_lsd` reads
`--loss_triplet_margin`: an LSD key is its ranking loss plus distillation), read when the miner is built.
With reference rows the positives and negatives come from batch ∪ reference (the batch's rows are the anchors).
Deviation: where the reference crashes on an anchor with no positive or no negative (it never skips an
anchor), that anchor is skipped, so T < B only in batches the reference cannot mine.
"""
import torch

from batch_mining.common import (MiningError, anchor_masks, as_triplets, candidate_distances, candidate_labels,
                                 draw_uniform, read_option)


LSD_SUFFIX = '_lsd'


def margin_flag(loss):
    """The flag holding the margin for the loss key `loss`: `loss_<base>_margin`, base without `_lsd`
    (the suffix is stripped here, not by criteria.base_name, so that the miners do not import the losses
    that receive them)."""
    base = loss[:-len(LSD_SUFFIX)] if loss.endswith(LSD_SUFFIX) else loss
    return 'loss_{}_margin'.format(base)


def check_semihard(loss, opt):
    """The margin semihard would use for the loss key `loss`, or a one-line MiningError naming the missing flag."""
    flag = margin_flag(loss)
    if not hasattr(opt, flag):
        raise MiningError('--batch_mining semihard reads its margin from --{}, which does not exist for '
                          '--loss {}; choose another miner'.format(flag, loss))
    return getattr(opt, flag)


class BatchMiner:
    key = 'semihard'

    def __init__(self, opt, loss=None):
        """`loss`: the loss key the miner serves (default --loss)."""
        self.par = opt
        self.margin = check_semihard(read_option(opt, 'loss') if loss is None else loss, opt)
        self.name = 'semihard'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None, return_distances=False):
        labels, joined, ref_embeddings = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        distances = candidate_distances(batch, ref_embeddings)
        _, positive, negative = anchor_masks(labels, joined)
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
