"""Full float32 matrix products for the metrics, whatever TF32 setting the training chose.

TF32 keeps 10 mantissa bits of each operand: a product is then off by about 1e-3 relative, a hundred
times the k-means' pruning tolerance (kmeans.GEMM_TOLERANCE) and enough to reorder near neighbours,
so a GPU evaluation would silently differ from the CPU's. `full_float32_matmul` pins IEEE float32
products while the metrics run and restores the caller's setting afterwards (through the
`fp32_precision` API: mixing it with the legacy `allow_tf32` flag makes torch raise).
NVIDIA_TF32_OVERRIDE (any value but 0) can force TF32 inside cuBLAS whatever torch asks for; then
`forced_tf32` is true and the k-means computes its distance products in float64 instead, which TF32
never touches (the neighbour search stays in float32: its ranks may then move among near ties).
"""
import contextlib
import os

import torch


def forced_tf32(device):
    """True when cuBLAS may use TF32 for float32 products on `device` regardless of torch's setting."""
    return torch.device(device).type == 'cuda' and os.environ.get('NVIDIA_TF32_OVERRIDE', '0').strip() not in ('', '0')


@contextlib.contextmanager
def full_float32_matmul(device):
    """IEEE float32 matmul on CUDA inside the block; the caller's TF32 setting afterwards."""
    if torch.device(device).type != 'cuda':
        yield
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, 'fp32_precision'):
        previous = matmul.fp32_precision
        matmul.fp32_precision = 'ieee'
        try:
            yield
        finally:
            matmul.fp32_precision = previous
    else:  # torch before 2.9: the legacy flag is the only one
        previous = matmul.allow_tf32
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = previous
