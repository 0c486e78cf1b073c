"""DataLoader keyword arguments for the loops: the pipeline's throughput levers in one place.

pin_memory on CUDA (asynchronous host-to-device copies of the uint8 batches), persistent workers (no
re-fork and re-import of every worker each epoch; the epoch reaches them through the batch keys, see
`sample_randomness`), and a deeper prefetch so the workers run ahead while the device trains.
"""
import torch

PREFETCH_FACTOR = 4


def loader_options(opt, device):
    """kwargs for torch.utils.data.DataLoader (besides dataset / batch_size / batch_sampler / shuffle)."""
    workers = int(opt.kernels)
    options = {'num_workers': workers, 'pin_memory': torch.device(device).type == 'cuda'}
    if workers > 0:
        options.update(persistent_workers=True, prefetch_factor=PREFETCH_FACTOR)
    return options
