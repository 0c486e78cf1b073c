"""`disthist_batchmatch`: the candidate whose distance histogram and feature moments match the big batch's."""
import torch

from datasampler.batchmatch import BatchMatchSampler
from datasampler.distances import euclidean_distances

REQUIRES_STORAGE = True

N_BINS = 50
HISTOGRAM_WEIGHT = 75


def normalised_histogram(values, low, high, n_bins=N_BINS):
    """numpy.histogram(values, n_bins, (low, high)) / its total count, over the last axis; `low`/`high` broadcast
    against `values[..., 0]`. Values outside [low, high] are dropped; the last bin includes `high`."""
    low, high = low.unsqueeze(-1), high.unsqueeze(-1)
    bins = ((values - low) * (n_bins / (high - low))).floor().long().clamp(0, n_bins - 1)
    inside = ((values >= low) & (values <= high)).to(values.dtype)
    counts = torch.zeros(*values.shape[:-1], n_bins, dtype=values.dtype, device=values.device)
    counts.scatter_add_(-1, bins, inside)
    return counts / counts.sum(-1, keepdim=True)


def histogram_wasserstein(first, second):
    """scipy.stats.wasserstein_distance(first, second) for equally long samples: the reference passes bin heights as
    samples (kept for comparability: bin positions are ignored), so this is the mean absolute difference of the sorted
    heights."""
    return (first.sort(-1).values - second.sort(-1).values).abs().mean(-1)


class Sampler(BatchMatchSampler):
    """cost = ‖μ_big − μ_sub‖ + ‖σ_big − σ_sub‖ + 75·2W(h_big, h_sub), σ the population standard deviation and h the
    normalised 50-bin histogram of the pairwise distances on the big batch's [min, max] range. The reference sums
    W(h_big, h_sub) and W(h_sub, h_big), which are equal: 2W."""

    name = 'distmoment_batchmatch_sampler'

    def candidate_costs(self, embeddings, candidates):
        points = embeddings.double()
        n_calls, n_big, _ = points.shape
        calls = torch.arange(n_calls, device=points.device)
        distances = euclidean_distances(points)
        rows, cols = torch.triu_indices(n_big, n_big, 1, device=points.device)
        big_values = distances[:, rows, cols]
        low, high = big_values.min(1).values, big_values.max(1).values
        flat = low == high  # numpy widens an empty range to [v − 0.5, v + 0.5]
        low, high = torch.where(flat, low - 0.5, low), torch.where(flat, high + 0.5, high)
        big_histogram = normalised_histogram(big_values, low, high)

        sub_rows, sub_cols = torch.triu_indices(self.batch_size, self.batch_size, 1, device=points.device)
        pair_index = candidates[..., sub_rows] * n_big + candidates[..., sub_cols]
        sub_values = distances.flatten(1)[calls[:, None, None], pair_index]
        sub_histogram = normalised_histogram(sub_values, low[:, None], high[:, None])
        histogram_term = 2 * histogram_wasserstein(big_histogram.unsqueeze(1), sub_histogram)

        sub_points = points[calls[:, None, None], candidates]
        mean_term = (points.mean(1, keepdim=True) - sub_points.mean(2)).norm(dim=-1)
        std_term = (points.std(1, correction=0, keepdim=True) - sub_points.std(2, correction=0)).norm(dim=-1)
        return mean_term + std_term + HISTOGRAM_WEIGHT * histogram_term
