"""`greedy_coreset`: greedy farthest-point (k-centre) anchors on squared distances."""
import torch

from datasampler.coreset import CoresetSampler
from datasampler.distances import squared_distances

REQUIRES_STORAGE = True

PERCENTILE = 0.97


def greedy_coreset(points, n_picks, softened=False):
    """Positions (n_calls × n_picks) picked greedily in each call's `points` (n_calls × n × D).

    First pick uniform; every later pick maximises the squared distance to the nearest pick so far (first index on
    ties), or with `softened` is uniform among the points whose value reaches the 97th percentile (linear
    interpolation) of all current values. The reference starts the values at the row norms of the squared-distance
    matrix, which never bind; +∞ is the same selection.
    """
    squared = squared_distances(points)
    n_calls, n_points = squared.shape[:2]
    calls = torch.arange(n_calls, device=points.device)
    nearest = torch.full((n_calls, n_points), float('inf'), dtype=squared.dtype, device=points.device)
    picks = torch.empty(n_calls, n_picks, dtype=torch.long, device=points.device)
    pick = torch.randint(n_points, (n_calls,), device=points.device)
    for step in range(n_picks):
        if step and softened:
            threshold = torch.quantile(nearest, PERCENTILE, dim=1, keepdim=True)
            pick = torch.multinomial((nearest >= threshold).to(squared.dtype), 1).squeeze(1)
        elif step:
            pick = nearest.argmax(1)
        picks[:, step] = pick
        nearest = torch.minimum(nearest, squared[calls, pick])
    return picks


class Sampler(CoresetSampler):
    """Reads `--data_gc_softened`; `--data_gc_coreset_lim` and `--data_batchmatch_ncomps` are stored, unused, as in the
    reference (start-up prints a notice when they are set: datasampler/ignored_flags.py)."""

    name = 'greedy_coreset_sampler'

    def __init__(self, opt, image_dict, image_list=None):
        super().__init__(opt, image_dict, image_list)
        self.softened = opt.data_gc_softened
        self.coreset_lim = opt.data_gc_coreset_lim

    def select_coreset(self, points, n_picks):
        return greedy_coreset(points, n_picks, self.softened)
