"""What the losses share: label handling, the miner names each loss family accepts (read from the miner
registry), the "graph zero" of degenerate batches, the four distances and masked log-sum-exp over ragged
index sets.
"""
import numpy as np
import torch

import batch_mining

LSD_SUFFIX = '_lsd'
# the set-form miners (a 3-tuple of per-anchor sets); every other registered miner returns triplets
SET_FORM_MINERS = ('npair', 'lifted')


class CriterionError(ValueError):
    """A loss called with input or options it cannot work with; the message names the cause."""


def all_miner_names():
    """Every registered miner, in registry order (the list ap_loss keeps from the reference)."""
    return list(batch_mining.BATCHMINING_METHODS)


def triplet_miner_names():
    """The registered miners that return (anchor, positive, negative) triplets: all but the set-form ones,
    which a triplet loss would silently misread as three triplets."""
    return [name for name in batch_mining.BATCHMINING_METHODS if name not in SET_FORM_MINERS]


def graph_zero(batch):
    """An exact 0.0 attached to `batch`, so backward() runs and yields all-zero gradients; what a loss returns
    when it has nothing to average. Summing an empty slice keeps it 0 even when the batch holds NaN or inf."""
    return batch.reshape(-1)[:0].sum()


def label_tensor(labels, batch):
    """Labels (tensor on any device, numpy array or list) as a 1-D int64 tensor on the batch's device: the one
    conversion every loss, the miners it calls and the distillation term receive."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().to(device=batch.device, dtype=torch.int64)
    else:
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=batch.device)
    labels = labels.reshape(-1)
    if labels.numel() != batch.shape[0]:
        raise CriterionError('loss got {} labels for a batch of {} embeddings'.format(
            labels.numel(), batch.shape[0]))
    return labels


def check_class_range(labels, n_classes, loss_name):
    """Losses with per-class parameters index them with the labels; refuse out-of-range ones with one line
    instead of an index error deep inside a gather."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise CriterionError('{} loss: label {} is outside 0..n_classes-1 (n_classes = {})'.format(
            loss_name, int(bad), n_classes))


def triplet_indices(triplets, batch):
    """Triplet-form miner output (a list of (a, p, n) or a (T, 3) tensor) as a (T, 3) int64 tensor on the
    batch's device; T may be 0."""
    if not isinstance(triplets, torch.Tensor):
        triplets = np.asarray(triplets, dtype=np.int64) if len(triplets) else np.zeros((0, 3), np.int64)
    triplets = torch.as_tensor(triplets, dtype=torch.int64, device=batch.device)
    if triplets.numel() % 3:
        raise CriterionError('a triplet loss needs (anchor, positive, negative) triplets; the miner '
                             'returned something of shape {}'.format(tuple(triplets.shape)))
    return triplets.reshape(-1, 3)


def position_vector(positions, device):
    """A list of batch positions (one per anchor, as the set-form miners give) as an int64 tensor."""
    if isinstance(positions, torch.Tensor):
        return positions.to(device=device, dtype=torch.int64).reshape(-1)
    return torch.as_tensor(np.asarray(positions, dtype=np.int64).reshape(-1), device=device)


def membership_mask(sets, n_rows, n_cols, device):
    """Ragged index sets (a list of index arrays, one per anchor; or an (n_rows, n_cols) bool mask)
    as an (n_rows, n_cols) bool mask, so per-anchor sums become masked row reductions."""
    if isinstance(sets, (torch.Tensor, np.ndarray)) and sets.dtype in (torch.bool, np.bool_):
        return torch.as_tensor(sets, device=device).reshape(n_rows, n_cols)
    mask = torch.zeros(n_rows, n_cols, dtype=torch.bool, device=device)
    if n_rows == 0:
        return mask
    sizes = np.fromiter(map(len, sets), dtype=np.int64, count=n_rows)
    if sizes.sum() == 0:
        return mask
    columns = np.concatenate(sets).astype(np.int64)
    rows = np.repeat(np.arange(n_rows), sizes)
    mask[torch.as_tensor(rows, device=device), torch.as_tensor(columns, device=device)] = True
    return mask


def masked_logsumexp(values, mask, dim=-1):
    """LSE over the masked entries along `dim`; −inf with zero gradient where the set is empty."""
    values = values.masked_fill(~mask, float('-inf'))
    shift = values.detach().amax(dim=dim, keepdim=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    total = (values - shift).exp().sum(dim=dim)
    empty = ~mask.any(dim=dim)
    safe = torch.where(empty, torch.ones_like(total), total)
    return torch.where(empty, torch.full_like(total, float('-inf')), safe.log() + shift.squeeze(dim))


def log1p_sum_exp(values, mask, dim=-1):
    """log(1 + Σ_masked exp(v)) in the stable form: the LSE over the set plus a 0 term, which agrees with the
    reference's direct form wherever that does not overflow."""
    values = values.masked_fill(~mask, float('-inf'))
    zero = torch.zeros_like(values.narrow(dim, 0, 1))
    return torch.logsumexp(torch.cat([zero, values], dim=dim), dim=dim)


def squared_distance(u, v):
    """d²: the plain squared Euclidean distance, row-wise (triplet loss)."""
    return (u - v).pow(2).sum(dim=-1)


def margin_distance(u, v):
    """d_m = sqrt(Σ (u − v)² + 1e-8), row-wise: the margin loss's smoothed distance, 1e-4 for u = v."""
    return ((u - v).pow(2).sum(dim=-1) + 1e-8).sqrt()


def eps_distance(u, v):
    """d_ε = sqrt(Σ (u − v + 1e-6)²): torch's pairwise distance with its default eps (contrastive, lifted)."""
    return (u - v + 1e-6).pow(2).sum(dim=-1).sqrt()


def plain_distance(u, v):
    """‖u − v‖, whose gradient at 0 is 0 (torch's norm convention; quadruplet)."""
    return torch.linalg.vector_norm(u - v, dim=-1)


def cross_distances(rows, columns, offset=0.0):
    """All ‖r_i + offset − c_j‖ at once: d_ε with offset 1e-6, ‖u − v‖ with 0. The direct (not Gram-matrix)
    kernel keeps near-zero distances exact and their gradient at 0 equal to 0, like torch's norm."""
    return torch.cdist(rows + offset if offset else rows, columns, compute_mode='donot_use_mm_for_euclid_dist')
