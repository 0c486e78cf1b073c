"""BatchNorm over the global batch for gloo / the CPU, where torch's SyncBatchNorm refuses to run.

Training-mode statistics are those of the whole global batch: the per-channel sum and count, then the sum of
squared deviations from the global mean (two passes, as precise as plain BatchNorm), each summed over ranks
by a differentiable all_reduce. Its backward sums the incoming gradients over ranks, because the statistic is
shared: each rank back-propagates only the paths through its own slice of the batch.
"""
import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """y = Σ_ranks x on every rank; dL/dx = Σ_ranks dL/dy (every rank's paths through the shared sum)."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone()
        dist.all_reduce(total)
        return total


def all_reduce_sum(tensor):
    return _AllReduceSum.apply(tensor)


class GlobalBatchNorm(_BatchNorm):
    """Drop-in for BatchNorm1d/2d/3d under data parallelism; outside a process group it is plain BatchNorm."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError('GlobalBatchNorm expects at least 2-D input (got {}-D)'.format(input.dim()))

    def forward(self, input):
        batch_statistics = self.training or self.running_mean is None
        if not (batch_statistics and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        # half-precision input (autocast) is normalised in float32, like plain BatchNorm does
        values = input.float() if torch.finfo(input.dtype).bits < 32 else input
        count = torch.full((1,), input.numel() // input.shape[1], dtype=values.dtype, device=input.device)
        sums = all_reduce_sum(torch.cat([values.sum(dims), count]))
        total = sums[-1].detach()
        mean = sums[:-1] / total
        centred = values - mean.view(shape)
        variance = all_reduce_sum((centred * centred).sum(dims)) / total
        output = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats:
            self._update_running_statistics(mean.detach(), variance.detach(), total)
        return output.to(input.dtype)

    @torch.no_grad()
    def _update_running_statistics(self, mean, variance, total):
        """As BatchNorm: exponential (or, with momentum None, cumulative) average, unbiased variance."""
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = variance * (total / max(float(total) - 1, 1.0))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
