"""`d2_coreset`: density-weighted D²-sampling of anchors."""
import torch

from datasampler.base import SamplerConfigError
from datasampler.coreset import CoresetSampler
from datasampler.distances import squared_distances

REQUIRES_STORAGE = True

# Relative eigenvalue cut-off of the covariance pseudo-inverse: scipy's `multivariate_normal(allow_singular=True)`.
PINV_RTOL = 1e6 * torch.finfo(torch.float64).eps


def gaussian_log_density(points):
    """Log-density, up to a per-call constant, of N(μ, Σ) fitted to each call's points (unbiased Σ) at those points.

    A singular Σ (D ≥ bigbs, low-rank storage) uses the pseudo-inverse, i.e. the density on the support; the
    reference's scipy call raises there. The constant cancels in the normalised D² weights.
    """
    centred = points - points.mean(1, keepdim=True)
    covariance = centred.transpose(1, 2) @ centred / (points.shape[1] - 1)
    precision = torch.linalg.pinv(covariance, hermitian=True, rtol=PINV_RTOL)
    return -0.5 * torch.einsum('cnd,cde,cne->cn', centred, precision, centred)


def d2_coreset(points, n_picks, lam=1.0):
    """Positions (n_calls × n_picks) drawn without replacement in each call's `points` (n_calls × n × D).

    Start: the point nearest to z ~ N(μ, Σ). Then repeatedly draw j among the remaining points with
    P(j) ∝ g_j · A_j^λ, g the fitted Gaussian density and A_j the summed squared distances from j to every pick so
    far. Computed in float64 log space. If every remaining A_j is 0 (the rest coincide with picks) the reference
    divides 0 by 0; here the draw falls back to g alone.
    """
    points = points.double()
    n_calls, n_points, _ = points.shape
    calls = torch.arange(n_calls, device=points.device)
    log_density = gaussian_log_density(points)
    centred = points - points.mean(1, keepdim=True)
    noise = torch.randn(n_calls, 1, n_points, dtype=points.dtype, device=points.device)
    z = points.mean(1, keepdim=True) + noise @ centred / (n_points - 1) ** 0.5
    start = ((points - z) ** 2).sum(-1).argmin(1)
    squared = squared_distances(points)
    accumulated = squared[calls, :, start]
    chosen = torch.zeros(n_calls, n_points, dtype=torch.bool, device=points.device)
    chosen[calls, start] = True
    picks = [start]
    for _ in range(n_picks - 1):
        logits = log_density + lam * accumulated.log() if lam else log_density.clone()
        logits = logits.masked_fill(chosen, -torch.inf)
        stuck = torch.isneginf(logits).all(1, keepdim=True)
        logits = torch.where(stuck, log_density.masked_fill(chosen, -torch.inf), logits)
        pick = torch.multinomial(torch.softmax(logits, 1), 1).squeeze(1)
        chosen[calls, pick] = True
        accumulated = accumulated + squared[calls, :, pick]
        picks.append(pick)
    return torch.stack(picks, 1)


class Sampler(CoresetSampler):
    """Reads `--data_d2_coreset_lambda` (λ ≥ 0); `--data_batchmatch_ncomps` is stored but unused (no candidates
    to count).

    Deviation: named 'd2_coreset_sampler'; the reference's 'greedy_coreset_sampler' is a copy-paste slip.
    """

    name = 'd2_coreset_sampler'

    def __init__(self, opt, image_dict, image_list=None):
        super().__init__(opt, image_dict, image_list)
        self.lam = opt.data_d2_coreset_lambda
        if self.lam < 0:
            raise SamplerConfigError(f'--data_d2_coreset_lambda must be >= 0 (got {self.lam})')
        if self.pool_size < 2:
            raise SamplerConfigError(f'{self.name}: the covariance needs a big batch of at least 2 (--data_batchmatch_'
                                     f'bigbs {self.big_batch_size}, {self.n_images} training images)')

    def _bytes_per_call(self):
        return 2 * super()._bytes_per_call() + 8 * self.embed_dim ** 2

    def select_coreset(self, points, n_picks):
        return d2_coreset(points, n_picks, self.lam)
