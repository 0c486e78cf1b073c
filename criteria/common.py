"""What the losses share (spec criteria.md §0): label and miner-output handling, the "graph zero" of
§0.4, the four distances of §0.2 and masked log-sum-exp over ragged index sets.
"""
import numpy as np
import torch

TRIPLET_MINERS = ['random', 'semihard', 'softhard', 'distance', 'rho_distance', 'parametric',
                  'random_distance', 'intra_random']
ALL_MINERS = ['random', 'semihard', 'softhard', 'distance', 'rho_distance', 'npair', 'parametric',
              'lifted', 'random_distance', 'intra_random']


class CriterionError(ValueError):
    """A loss called with input or options it cannot work with; the message names the cause."""


def graph_zero(batch):
    """§0.4: an exact 0.0 attached to `batch`, so backward() runs and yields all-zero gradients.
    Summing an empty slice keeps it 0 even when the batch holds NaN or inf."""
    return batch.reshape(-1)[:0].sum()


def label_tensor(labels, batch):
    """Labels (tensor on any device, numpy array or list) as a 1-D int64 tensor on the batch's device."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().to(device=batch.device, dtype=torch.int64)
    else:
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=batch.device)
    labels = labels.reshape(-1)
    if labels.numel() != batch.shape[0]:
        raise CriterionError('loss got {} labels for a batch of {} embeddings'.format(
            labels.numel(), batch.shape[0]))
    return labels


def miner_labels(labels):
    """Labels as the miner receives them (§0.3): a torch tensor or numpy array is passed unchanged."""
    return labels if isinstance(labels, (torch.Tensor, np.ndarray)) else np.asarray(labels)


def check_class_range(labels, n_classes, loss_name):
    """§0.1: losses with per-class parameters index them with the labels; refuse out-of-range ones."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise CriterionError('{} loss: label {} is outside 0..n_classes-1 (n_classes = {})'.format(
            loss_name, int(bad), n_classes))


def triplet_indices(triplets, batch):
    """Triplet-form miner output (§0.4: a list of (a, p, n) or a (T, 3) tensor) as a (T, 3) int64
    tensor on the batch's device; T may be 0."""
    if not isinstance(triplets, torch.Tensor):
        triplets = np.asarray(triplets, dtype=np.int64) if len(triplets) else np.zeros((0, 3), np.int64)
    triplets = torch.as_tensor(triplets, dtype=torch.int64, device=batch.device)
    if triplets.numel() % 3:
        raise CriterionError('a triplet loss needs (anchor, positive, negative) triplets; the miner '
                             'returned something of shape {}'.format(tuple(triplets.shape)))
    return triplets.reshape(-1, 3)


def position_vector(positions, device):
    """A list of batch positions (one per anchor, set-form miners A.6/A.8) as an int64 tensor."""
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
    """log(1 + Σ_masked exp(v)) in the stable form of §0.3 (LSE over the set plus a 0 term)."""
    values = values.masked_fill(~mask, float('-inf'))
    zero = torch.zeros_like(values.narrow(dim, 0, 1))
    return torch.logsumexp(torch.cat([zero, values], dim=dim), dim=dim)


def squared_distance(u, v):
    """§0.2 d²: the plain squared Euclidean distance, row-wise."""
    return (u - v).pow(2).sum(dim=-1)


def margin_distance(u, v):
    """§0.2 d_m: sqrt(Σ (u − v)² + 1e-8), row-wise."""
    return ((u - v).pow(2).sum(dim=-1) + 1e-8).sqrt()


def eps_distance(u, v):
    """§0.2 d_ε: sqrt(Σ (u − v + 1e-6)²), torch's pairwise distance with its default eps."""
    return (u - v + 1e-6).pow(2).sum(dim=-1).sqrt()


def plain_distance(u, v):
    """§0.2 ‖u − v‖, whose gradient at 0 is 0 (torch's norm convention)."""
    return torch.linalg.vector_norm(u - v, dim=-1)


def cross_distances(rows, columns, offset=0.0):
    """All ‖r_i + offset − c_j‖ at once: d_ε with offset 1e-6, ‖u − v‖ with 0. The direct (not Gram-matrix)
    kernel keeps near-zero distances exact and their gradient at 0 equal to 0, like torch's norm."""
    return torch.cdist(rows + offset if offset else rows, columns, compute_mode='donot_use_mm_for_euclid_dist')
