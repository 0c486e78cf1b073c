"""Histogram loss of Ustinova & Lempitsky with a triangular kernel for every bin count.

Only deterministic reductions: index_add (and cumsum) on CUDA sum in a random order, which made two runs
with the same seed drift apart."""
import torch

from criteria.common import graph_zero, label_tensor

ALLOWED_MINING_OPS = None
REQUIRES_BATCHMINER = False
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """L = Σ_l h⁻_l Σ_{k≤l} h⁺_k: the estimated probability that a negative pair is at least as similar
    as a positive pair, histograms over the unordered pairs i < j on the grid t_k = −1 + k·2/(K−1)."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt):
        super().__init__()
        self.name = 'histogram'
        self.nbins = opt.loss_histogram_nbins
        self.bin_width = 2 / (self.nbins - 1)

    def forward(self, batch, labels, **kwargs):
        labels = label_tensor(labels, batch)
        similarity = batch @ batch.T
        upper = torch.ones_like(similarity, dtype=torch.bool).triu(diagonal=1)
        same = labels[:, None] == labels[None, :]
        positive, negative = (upper & same).to(batch.dtype), (upper & ~same).to(batch.dtype)
        n_pos, n_neg = positive.sum(), negative.sum()
        if not n_pos or not n_neg:
            return graph_zero(batch)
        # each similarity splits linearly between its two neighbouring grid points t_k ≤ s < t_k+1;
        # every other bin has weight max(0, 1 − |s − t|/Δ) = 0, so only those two are computed
        lower = ((similarity.detach() + 1) / self.bin_width).floor().to(torch.int64)
        bins = torch.stack([lower, lower + 1], dim=-1)
        grid = -1 + self.bin_width * bins.to(batch.dtype)
        weights = torch.nn.functional.relu(1 - (similarity[..., None] - grid).abs() / self.bin_width)
        weights = weights * ((bins >= 0) & (bins < self.nbins))
        bins = bins.clamp(min=0, max=self.nbins - 1).reshape(-1)
        hist_pos = self.histogram(bins, weights * positive[..., None], batch) / n_pos
        hist_neg = self.histogram(bins, weights * negative[..., None], batch) / n_neg
        # Σ_l h⁻_l Σ_{k≤l} h⁺_k as the lower triangle of the outer product: a plain sum, where cumsum on
        # CUDA has no fixed summation order
        return torch.outer(hist_neg, hist_pos).tril().sum()

    def histogram(self, bins, weights, batch):
        """Σ of the weights per bin as a masked column sum (fixed reduction order on every device); index_add
        and scatter on CUDA accumulate in a random order."""
        columns = torch.arange(self.nbins, device=batch.device)
        in_bin = bins[:, None] == columns[None, :]
        return torch.where(in_bin, weights.reshape(-1, 1), weights.new_zeros(())).sum(0)
