"""Per-step training statistics without per-step host stalls.

The reference's gradient statistics launch a few kernels per parameter tensor (~650 for ResNet50) and
read two numbers back every step; the losses' .item() add more stalls. Here the statistics are a
handful of multi-tensor (foreach) kernels whose results stay on the device, and StepMetrics keeps every
step's values there until the epoch ends, when they come back to the host in one transfer.
"""
import math

import numpy as np
import torch


def gradient_statistics(parameters):
    """(RMS, max |g|) over every gradient entry, as 0-d float32 tensors on the gradients' device:
    RMS = sqrt(Σ g² / number of entries), logged as 'Grad L2' / 'Grad Max'. NaN, NaN without gradients."""
    groups = {}
    count = 0
    for parameter in parameters:
        if parameter.grad is not None:
            grad = parameter.grad.detach()
            groups.setdefault((grad.device, grad.dtype), []).append(grad)
            count += grad.numel()
    if not groups:
        nan = torch.tensor(math.nan)
        return nan, nan.clone()
    squares, largest = [], []
    first_device = next(iter(groups))[0]
    for (device, _), grads in groups.items():
        # one 2-norm and one inf-norm per tensor, each computed for all tensors of the group at once
        norms = torch.stack(torch._foreach_norm(grads, 2)).to(first_device, torch.float32)
        maxima = torch.stack(torch._foreach_norm(grads, math.inf)).to(first_device, torch.float32)
        squares.append(norms.square().sum())
        largest.append(maxima.max())
    total = torch.stack(squares).sum() if len(squares) > 1 else squares[0]
    largest = torch.stack(largest).max() if len(largest) > 1 else largest[0]
    return torch.sqrt(total / count), largest


class StepMetrics:
    """Scalars recorded once per step (loss, gradient statistics), kept where they were computed and
    read back together when the epoch ends. Values are identical to calling .item() each step."""

    def __init__(self):
        self._steps = {}
        self._host = None

    def add(self, name, value):
        """Record one step's value: a 0-d tensor (detached, so no graph is kept) or a Python number."""
        if isinstance(value, torch.Tensor):
            value = value.detach().reshape(())
        else:
            value = torch.tensor(float(value), dtype=torch.float64)
        self._steps.setdefault(name, []).append(value)
        self._host = None

    def names(self):
        return list(self._steps)

    def _to_host(self):
        """Every recorded value as Python floats, with one device-to-host copy per device and dtype."""
        if self._host is not None:
            return self._host
        by_device = {}
        for name, values in self._steps.items():
            for position, value in enumerate(values):
                by_device.setdefault((value.device, value.dtype), []).append((name, position, value))
        host = {name: [None] * len(values) for name, values in self._steps.items()}
        for entries in by_device.values():
            # float32/bf16/fp16 values are exact in float64, so this equals each value's .item()
            floats = torch.stack([value for _, _, value in entries]).to(torch.float64).cpu().tolist()
            for (name, position, _), number in zip(entries, floats):
                host[name][position] = number
        self._host = host
        return host

    def values(self, name):
        """The per-step values of `name` as Python floats, in the order they were added ([] if none)."""
        return list(self._to_host().get(name, []))

    def mean(self, name):
        """np.mean of the per-step values (float64 on the host, as the reference logs it); NaN if none."""
        values = self.values(name)
        return float(np.mean(values)) if values else float('nan')

    def means(self):
        """{name: mean} for every recorded name."""
        return {name: self.mean(name) for name in self._to_host()}
