"""The histogram loss with deterministic bin accumulation: the same value and gradients as the previous
index_add implementation and as a slow per-pair loop, for float32 and float64 batches."""
import pytest
import torch

import criteria
from criteria_fixtures import make_opt, random_batch


def index_add_histogram_loss(batch, labels, nbins):
    """The previous implementation (index_add into the bins, cumsum), kept as the reference."""
    width = 2 / (nbins - 1)
    similarity = batch @ batch.T
    upper = torch.ones_like(similarity, dtype=torch.bool).triu(diagonal=1)
    same = labels[:, None] == labels[None, :]
    positive, negative = (upper & same).to(batch.dtype), (upper & ~same).to(batch.dtype)
    lower = ((similarity.detach() + 1) / width).floor().to(torch.int64)
    bins = torch.stack([lower, lower + 1], dim=-1)
    grid = -1 + width * bins.to(batch.dtype)
    weights = torch.nn.functional.relu(1 - (similarity[..., None] - grid).abs() / width)
    weights = weights * ((bins >= 0) & (bins < nbins))
    bins = bins.clamp(min=0, max=nbins - 1).reshape(-1)

    def histogram(w):
        return torch.zeros(nbins, dtype=batch.dtype).index_add(0, bins, w.reshape(-1))

    hist_pos = histogram(weights * positive[..., None]) / positive.sum()
    hist_neg = histogram(weights * negative[..., None]) / negative.sum()
    return (hist_neg * hist_pos.cumsum(0)).sum()


def loop_histogram_loss(batch, labels, nbins):
    """Slow definition: every pair i < j adds max(0, 1 − |s − t_k|/Δ) to every bin k of its histogram."""
    width = 2 / (nbins - 1)
    grid = [-1 + width * k for k in range(nbins)]
    pos = [batch.new_zeros(()) for _ in range(nbins)]
    neg = [batch.new_zeros(()) for _ in range(nbins)]
    n_pos = n_neg = 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            s = batch[i] @ batch[j]
            target = pos if labels[i] == labels[j] else neg
            for k in range(nbins):
                target[k] = target[k] + torch.relu(1 - (s - grid[k]).abs() / width)
            n_pos, n_neg = n_pos + (labels[i] == labels[j]), n_neg + (labels[i] != labels[j])
    loss, below = batch.new_zeros(()), batch.new_zeros(())
    for k in range(nbins):
        below = below + pos[k] / n_pos
        loss = loss + neg[k] / n_neg * below
    return loss


def value_and_grad(function, batch):
    batch = batch.detach().clone().requires_grad_()
    value = function(batch)
    value.backward()
    return value.detach(), batch.grad


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('nbins', [3, 25, 65])
def test_same_value_and_gradients_as_index_add(dtype, nbins):
    criterion = criteria.select('histogram', make_opt('--loss_histogram_nbins', str(nbins)))
    for seed in range(3):
        batch, labels = random_batch(seed, dtype=dtype)
        new = value_and_grad(lambda b: criterion(batch=b, labels=labels), batch)
        old = value_and_grad(lambda b: index_add_histogram_loss(b, labels, nbins), batch)
        tolerance = 1e-6 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(new[0], old[0], rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(new[1], old[1], rtol=tolerance, atol=tolerance)


def test_same_value_and_gradients_as_the_pair_loop():
    criterion = criteria.select('histogram', make_opt('--loss_histogram_nbins', '9'))
    batch, labels = random_batch(5, dtype=torch.float64)
    new = value_and_grad(lambda b: criterion(batch=b, labels=labels), batch)
    slow = value_and_grad(lambda b: loop_histogram_loss(b, labels.tolist(), 9), batch)
    torch.testing.assert_close(new[0], slow[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(new[1], slow[1], rtol=1e-10, atol=1e-12)


def test_similarities_on_grid_points_and_at_the_ends():
    """Pairs at s = 1 (identical rows) and s = −1 (opposite rows) sit on the outermost grid points."""
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    criterion = criteria.select('histogram', make_opt('--loss_histogram_nbins', '5'))
    new = value_and_grad(lambda b: criterion(batch=b, labels=labels), x)
    slow = value_and_grad(lambda b: loop_histogram_loss(b, labels.tolist(), 5), x)
    torch.testing.assert_close(new[0], slow[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new[1], slow[1], rtol=1e-12, atol=1e-12)
