"""Gradient statistics with foreach norms and the per-step accumulator (training/grad_stats.py):
the same numbers as the per-tensor computation the trainer used before, and the logged means unchanged."""
import math

import numpy as np
import pytest
import torch

from training.grad_stats import StepMetrics, gradient_statistics


def per_tensor_statistics(parameters):
    """The trainer's previous computation: one sum of squares and one max per tensor, read back at once."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return float('nan'), float('nan')
    squares = torch.stack([g.pow(2).sum() for g in grads]).sum()
    count = sum(g.numel() for g in grads)
    largest = torch.stack([g.abs().max() for g in grads]).max()
    return float(torch.sqrt(squares / count)), float(largest)


def float64_statistics(parameters):
    """Independent: every entry in float64 numpy."""
    entries = np.concatenate([p.grad.detach().double().numpy().ravel() for p in parameters if p.grad is not None])
    return math.sqrt(np.mean(entries ** 2)), float(np.abs(entries).max())


def small_network_with_gradients(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 5))
    model.add_module('unused', torch.nn.Linear(4, 4))  # parameters without a gradient are skipped
    model[:5](torch.randn(4, 3, 8, 8)).pow(2).sum().mul(10.0 ** (seed - 2)).backward()
    return model


@pytest.mark.parametrize('seed', range(5))
def test_equals_the_per_tensor_computation_and_float64(seed):
    model = small_network_with_gradients(seed)
    rms, largest = gradient_statistics(model.parameters())
    assert rms.shape == () and largest.shape == () and rms.dtype == torch.float32
    before_rms, before_max = per_tensor_statistics(model.parameters())
    exact_rms, exact_max = float64_statistics(model.parameters())
    assert float(largest) == before_max == pytest.approx(exact_max, rel=1e-7)  # a max is exact
    # max relative difference seen: ~1e-7 (a square root then a square, in float32)
    assert float(rms) == pytest.approx(before_rms, rel=1e-6)
    assert float(rms) == pytest.approx(exact_rms, rel=1e-6)


def test_hand_computed_values():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(2, 1))
    a.grad = torch.tensor([3.0, -4.0])
    b.grad = torch.tensor([[0.0], [-12.0]])
    rms, largest = gradient_statistics([a, b])
    assert float(rms) == pytest.approx(math.sqrt((9 + 16 + 144) / 4), rel=1e-7) and float(largest) == 12.0


def test_mixed_dtypes_are_grouped():
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    a.grad = torch.tensor([1.0, 2.0, 2.0])
    b.grad = torch.tensor([-5.0, 0.0], dtype=torch.float64)
    rms, largest = gradient_statistics([a, b])
    assert float(rms) == pytest.approx(math.sqrt(34 / 5), rel=1e-7) and float(largest) == 5.0


def test_no_gradient_gives_nan_for_both():
    rms, largest = gradient_statistics([torch.nn.Parameter(torch.ones(3))])
    assert math.isnan(float(rms)) and math.isnan(float(largest))
    rms, largest = gradient_statistics([])
    assert math.isnan(float(rms)) and math.isnan(float(largest))


def test_step_metrics_means_equal_numpy_of_item_values():
    torch.manual_seed(0)
    losses = [torch.rand((), requires_grad=True) * 3 for _ in range(17)]
    metrics = StepMetrics()
    item_values = []
    for loss in losses:
        metrics.add('loss', loss)
        item_values.append(loss.item())
    assert metrics.values('loss') == item_values             # bit for bit
    assert metrics.mean('loss') == float(np.mean(item_values))
    assert metrics.means() == {'loss': float(np.mean(item_values))}


def test_step_metrics_keeps_every_step_in_order_and_no_graph():
    metrics = StepMetrics()
    x = torch.ones(2, requires_grad=True)
    for step in range(4):
        metrics.add('Grad L2', (x * step).sum())
        metrics.add('Grad Max', float(step))
    assert metrics.values('Grad L2') == [0.0, 2.0, 4.0, 6.0]
    assert metrics.values('Grad Max') == [0.0, 1.0, 2.0, 3.0]
    assert metrics.values('missing') == [] and math.isnan(metrics.mean('missing'))
    assert not any(v.requires_grad for v in metrics._steps['Grad L2'])
    metrics.add('Grad L2', torch.tensor(8.0))   # adding after a read refreshes
    assert metrics.values('Grad L2')[-1] == 8.0


def test_step_metrics_reads_back_once(monkeypatch):
    metrics = StepMetrics()
    for step in range(10):
        metrics.add('loss', torch.tensor(float(step)))
        metrics.add('loss_rank', torch.tensor(float(step), dtype=torch.bfloat16))
    copies = []
    original = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, 'cpu', lambda self, *a, **k: copies.append(1) or original(self, *a, **k))
    metrics.means()
    metrics.values('loss')
    assert len(copies) == 2  # one per dtype, none for the second read
