"""Batched pairwise distances through the Gram identity, clipped at 0 (the coreset and batch-matching samplers).

Computed in place: one n × n matrix per leading index is the only large allocation (no gradients flow here).
"""
import torch


def squared_distances(points):
    """`s_ij = |x_i|² + |x_j|² − 2 x_i·x_j` clipped below at 0, per leading batch index of `points` (… × n × D)."""
    gram = points @ points.transpose(-1, -2)
    norms = torch.diagonal(gram, dim1=-2, dim2=-1).clone()
    return gram.mul_(-2).add_(norms.unsqueeze(-1)).add_(norms.unsqueeze(-2)).clamp_min_(0)


def euclidean_distances(points):
    """Square root of `squared_distances`, with an exact zero diagonal."""
    distances = squared_distances(points).sqrt_()
    torch.diagonal(distances, dim1=-2, dim2=-1).zero_()
    return distances
