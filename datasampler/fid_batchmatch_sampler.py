"""`fid_batchmatch`: the candidate with the smallest Fréchet distance to the big batch.

Reachable through `select('fid_batchmatch', ...)` (the reference's select names a module that does not exist there).
"""
import torch

from datasampler.batchmatch import BatchMatchSampler

REQUIRES_STORAGE = True

EPS = 1e-8


def mean_and_covariance(points):
    """Mean and unbiased covariance (divisor n − 1) over axis −2."""
    mean = points.mean(-2, keepdim=True)
    centred = points - mean
    return mean.squeeze(-2), centred.transpose(-1, -2) @ centred / (points.shape[-2] - 1)


def trace_sqrt_product(first, second):
    """tr √(first·second) for symmetric positive definite matrices: the eigenvalues of first·second are those of
    first^½·second·first^½, so this equals the trace of scipy's `sqrtm(first @ second).real`."""
    values, vectors = torch.linalg.eigh(first)
    root = vectors @ (values.clamp_min(0).sqrt().unsqueeze(-1) * vectors.transpose(-1, -2))
    return torch.linalg.eigvalsh(root @ second @ root).clamp_min(0).sqrt().sum(-1)


class Sampler(BatchMatchSampler):
    """FID = ‖μ_b − μ_s‖² + tr Σ_b + tr Σ_s − 2 tr √((Σ_b + εI)(Σ_s + εI)), ε = 1e-8, unbiased covariances; the traces
    use the covariances without ε."""

    name = 'spc_fid_batchmatch_sampler'

    def candidate_costs(self, embeddings, candidates):
        points = embeddings.double()
        calls = torch.arange(points.shape[0], device=points.device)
        ridge = EPS * torch.eye(points.shape[-1], dtype=points.dtype, device=points.device)
        big_mean, big_cov = mean_and_covariance(points)
        sub_mean, sub_cov = mean_and_covariance(points[calls[:, None, None], candidates])
        cross = trace_sqrt_product((big_cov + ridge).unsqueeze(1), sub_cov + ridge)
        return (((big_mean.unsqueeze(1) - sub_mean) ** 2).sum(-1) + big_cov.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None]
                + sub_cov.diagonal(dim1=-2, dim2=-1).sum(-1) - 2 * cross)
