"""Per-segment sums that come out bit for bit the same on every device and in every run.

index_add_ on CUDA adds with atomics in whatever order the threads arrive, so float sums (k-means
centroids, class sums, per-query precisions) change from run to run and differ from the CPU's; the
k-means then drifts away from the faiss centroids. On the CPU index_add_ adds the rows of each segment
one after another in ascending row order. Elsewhere the rows are stably sorted by segment and added
position by position (step j adds the j-th row of every segment that has one): the same sequence of
float additions per segment, hence the same bits as the CPU.
"""
import numpy as np
import torch


def segment_sum(values, segments, n_segments):
    """out[s] = sum of values[i] over the i with segments[i] == s, added in ascending i."""
    if values.device.type == 'cpu':
        out = torch.zeros((n_segments,) + values.shape[1:], dtype=values.dtype, device=values.device)
        return out.index_add_(0, segments, values)
    return ordered_segment_sum(values, segments, n_segments)


def ordered_segment_sum(values, segments, n_segments):
    """The device-independent formulation: one step per position, max(segment size) steps in all."""
    sizes = torch.bincount(segments, minlength=n_segments)
    rows_by_segment = torch.argsort(segments, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    largest_first = torch.argsort(sizes, descending=True, stable=True)
    first_row = starts[largest_first]
    # the segments with more than j rows are the first active[j] of largest_first
    histogram = np.bincount(sizes.cpu().numpy(), minlength=1)
    active = n_segments - np.cumsum(histogram)[:-1]
    sums = torch.zeros((n_segments,) + values.shape[1:], dtype=values.dtype, device=values.device)
    for j, count in enumerate(active.tolist()):
        sums[:count] += values[rows_by_segment[first_row[:count] + j]]
    out = torch.empty_like(sums)
    out[largest_first] = sums
    return out
