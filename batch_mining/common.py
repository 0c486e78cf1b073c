"""What every miner shares: labels on the batch's device, the two Gram-matrix distance variants
(Dist-plain sqrt(max(s, 0)) and Dist-eps sqrt(max(s, 1e-4)) of the squared distance s), the
inverse-sphere-distance negative weights and the batched categorical draws that replace the
reference's per-anchor `np.random.choice` loop (same distributions, one draw per row).

All draws use torch's global generator of the batch's device (seeded by the trainer with --seed).

One interface for every miner, as pytorch-metric-learning's miners take it:
`miner(embeddings, labels, ref_embeddings=None, ref_labels=None)`. Anchors are always batch rows; the
candidates for positives and negatives are the batch's rows followed by the reference rows (a cross-batch
memory's entries), and the returned positions index that joined set, so batch rows keep their positions. A
batch row is never its own candidate (row i of the batch is column i of the joined set). Without reference
rows the joined set is the batch and every miner's draws are those of the batch alone, bit for bit. Unlike
PML, where a reference set replaces the batch as the candidates, here it widens them: the memory pairs the
batch with batch ∪ memory, and only the miner knows where an anchor's own column is.
"""
import numpy as np
import torch


class MiningError(ValueError):
    """A batch or an option a miner cannot work with; the message names the cause."""


def read_option(opt, flag):
    """`opt.<flag>`, or a one-line error naming the missing --flag."""
    if not hasattr(opt, flag):
        raise MiningError('batch mining needs the option --{}, which is not set'.format(flag))
    return getattr(opt, flag)


def batch_labels(labels, batch, device=None):
    """Labels (torch tensor on any device, numpy array or list) as a 1-D int64 tensor on `device`
    (default: the batch's), one per batch row (the reference's semihard and softhard crash on GPU labels)."""
    device = batch.device if device is None else device
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().to(device=device, dtype=torch.int64)
    else:
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=device)
    labels = labels.reshape(-1)
    if labels.numel() != batch.shape[0]:
        raise MiningError('batch mining got {} labels for a batch of {} embeddings'.format(
            labels.numel(), batch.shape[0]))
    return labels


def pairwise_distances(batch, floor=0.0):
    """sqrt(max(n_i + n_j - 2 G_ij, floor)) with G = X Xᵀ; floor 0 is Dist-plain, 1e-4 Dist-eps."""
    x = batch.detach()
    gram = x @ x.T
    norms = gram.diagonal()
    return (norms[:, None] + norms[None, :] - 2 * gram).clamp(min=floor).sqrt()


def candidate_labels(batch, labels, ref_embeddings=None, ref_labels=None):
    """(batch labels, labels of the joined candidate set, reference rows or None) on the batch's device: the
    joined labels are the batch's followed by the reference rows' (the same tensor without reference rows)."""
    labels = batch_labels(labels, batch)
    if ref_embeddings is None:
        if ref_labels is not None:
            raise MiningError('batch mining got reference labels without reference embeddings')
        return labels, labels, None
    if ref_labels is None:
        raise MiningError('batch mining got reference embeddings without their labels')
    ref_embeddings = ref_embeddings.detach().to(device=batch.device, dtype=batch.dtype)
    ref_labels = batch_labels(ref_labels, ref_embeddings, device=batch.device)
    if ref_embeddings.shape[1:] != batch.shape[1:]:
        raise MiningError('batch mining got reference embeddings of dimension {} for a batch of dimension {}'.format(
            tuple(ref_embeddings.shape[1:]), tuple(batch.shape[1:])))
    return labels, torch.cat([labels, ref_labels]), ref_embeddings


def candidate_distances(batch, ref_embeddings=None, floor=0.0):
    """Anchor-to-candidate distances: `pairwise_distances` of the batch without reference rows (B x B, the
    unmemoried values bit for bit), else sqrt(max(‖a‖² + ‖c‖² − 2 a·c, floor)) to batch ∪ reference (B x N)."""
    if ref_embeddings is None:
        return pairwise_distances(batch, floor)
    return cross_distances(batch, torch.cat([batch.detach(), ref_embeddings]), floor)


def cross_distances(rows, columns, floor=0.0):
    """sqrt(max(‖r‖² + ‖c‖² − 2 r·c, floor)) without gradient, rows × columns (the Gram form of the miners)."""
    rows, columns = rows.detach(), columns.detach()
    squared = rows.pow(2).sum(dim=1)[:, None] + columns.pow(2).sum(dim=1)[None, :] - 2 * rows @ columns.T
    return squared.clamp(min=floor).sqrt()


def anchor_masks(labels, column_labels):
    """The B x N masks (same, positive, negative) of the batch's anchors against the joined candidates:
    S(i) including column i (the anchor itself), P(i) = S(i) minus column i, N(i); `label_masks` when the
    candidates are the batch."""
    same = labels[:, None] == column_labels[None, :]
    positive = same & ~torch.eye(len(labels), len(column_labels), dtype=torch.bool, device=labels.device)
    return same, positive, ~same


def label_masks(labels):
    """The B x B masks (same, positive, negative): S(i) including i, P(i) = S(i) minus i, N(i)."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same, positive, ~same


def draw_uniform(mask):
    """One column per row, uniform over the row's True entries; every row must have one."""
    return draw_categorical(mask)


def draw_categorical(weights):
    """One column per row, column j with probability w_ij / Σ_j w_ij (rows checked by the caller).
    Inverse-CDF sampling in float64 with one uniform draw per row; unlike torch.multinomial on the
    CPU it costs about as much as a cumsum. A zero-weight column can never be returned."""
    n_rows, n_columns = weights.shape
    if n_rows == 0:
        return torch.zeros(0, dtype=torch.int64, device=weights.device)
    cdf = weights.to(torch.float64).cumsum(dim=1)
    u = torch.rand(n_rows, 1, dtype=torch.float64, device=weights.device) * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, u, right=True).squeeze(1)
    last_positive = n_columns - 1 - (weights > 0).flip(1).to(torch.int8).argmax(dim=1)
    return torch.where(drawn < n_columns, drawn, last_positive)


def inverse_sphere_log_weights(distances, dim):
    """Step 1 of the inverse-sphere weights: ℓ = (2−D)·ln d − ((D−3)/2)·ln(1 − d²/4), the negative
    log-density (up to a constant) of the distance between two uniform points on the unit sphere in R^D."""
    return ((2.0 - float(dim)) * torch.log(distances)
            - (float(dim - 3) / 2) * torch.log(1.0 - 0.25 * distances.pow(2)))


def inverse_sphere_weights(distances, dim, same_label):
    """Steps 2-4 of the inverse-sphere weights for every row at once, stabilised exactly as the reference: ℓ := 0 on
    same-label columns, u = exp(ℓ − max_row ℓ), u := 0 on same-label columns (unnormalised).
    Computed in the distances' dtype, so float32 underflow gives the reference's exact zeros.
    The upper cutoff is deliberately not applied, as in the reference (cutting far negatives made
    results slightly worse and can leave an anchor without negatives)."""
    log_q = inverse_sphere_log_weights(distances, dim).masked_fill(same_label, 0.0)
    weights = torch.exp(log_q - log_q.max(dim=1, keepdim=True).values)
    return weights.masked_fill(same_label, 0.0)


def draw_inverse_sphere_negatives(distances, dim, same_label, rows, miner_name):
    """One ISD negative for each anchor in `rows` (an index tensor). Where the reference gets NaN
    probabilities and a ValueError, this raises a MiningError: an anchor without any
    negative column, a negative at distance >= 2, or any other non-finite weight."""
    distances, same_label = distances[rows], same_label[rows]
    negative = ~same_label
    lonely = ~negative.any(dim=1)
    if lonely.any():
        raise MiningError('{} mining: anchor {} has no negative (every column shares its label); '
                          'the batch needs at least two classes'.format(
                              miner_name, int(rows[lonely.nonzero()[0, 0]])))
    if (distances[negative] >= 2).any():
        raise MiningError('{} mining: a negative lies at distance >= 2; inverse-sphere weights need '
                          'L2-normalised embeddings (0 < d < 2)'.format(miner_name))
    weights = inverse_sphere_weights(distances, dim, same_label)
    if not torch.isfinite(weights).all() or not (weights.sum(dim=1) > 0).all():
        raise MiningError('{} mining: non-finite inverse-sphere weights (NaN embeddings, or a negative '
                          'at distance 0 with a lower cutoff of 0)'.format(miner_name))
    return draw_categorical(weights)


def as_triplets(anchors, positives, negatives):
    """The triplet form of every triplet miner (one type instead of the reference's mix of lists and
    tuples of Python and numpy ints): an int64 (T, 3) tensor of (a, p, n) rows."""
    return torch.stack([anchors, positives, negatives], dim=1).to(torch.int64)
