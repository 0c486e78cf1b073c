"""Proxy-Anchor against a per-proxy, per-sample loop of the paper's formula (values and gradients of the
embeddings and the proxies, float64), its initialisation, learning rate and registry entries."""
import numpy as np
import pytest
import torch

import criteria
from criteria_fixtures import LABELS, make_opt, random_batch, value_and_grads
from criteria_reference_modern import kaiming_fan_out_std, slow_proxyanchor


def max_differences(fast, slow, *tensors):
    """(max abs, max rel) difference over the value and every gradient of the two functions."""
    fast_value, fast_grads = value_and_grads(fast, *tensors)
    slow_value, slow_grads = value_and_grads(slow, *tensors)
    largest_abs, largest_rel = 0.0, 0.0
    for a, b in zip([fast_value] + fast_grads, [slow_value] + slow_grads):
        difference = (a - b).abs().max().item()
        largest_abs = max(largest_abs, difference)
        largest_rel = max(largest_rel, difference / max(b.abs().max().item(), 1e-300))
    return largest_abs, largest_rel


@pytest.mark.parametrize('labels, n_classes, alpha, delta', [
    (LABELS, 5, 32.0, 0.1),        # every class present
    (LABELS, 9, 32.0, 0.1),        # four proxies without positives: negative term only
    ([3, 3, 1, 1, 7, 7, 7, 0], 8, 16.0, 0.2),
])
def test_proxyanchor_matches_the_papers_formula(labels, n_classes, alpha, delta):
    x, labels = random_batch(3, labels=labels, normalize=False)
    opt = make_opt('--loss_proxyanchor_alpha', str(alpha), '--loss_proxyanchor_delta', str(delta),
                   n_classes=n_classes)
    criterion = criteria.select('proxyanchor', opt).double()
    abs_diff, rel_diff = max_differences(lambda b, p: criterion(b, labels),
                                         lambda b, p: slow_proxyanchor(b, p, labels, alpha, delta),
                                         x, criterion.proxies)
    assert rel_diff < 1e-10 and abs_diff < 1e-9, (abs_diff, rel_diff)


def test_proxyanchor_lsd_ranking_term_is_the_base_loss():
    x, labels = random_batch(4, normalize=False)
    opt = make_opt('--kd_alpha', '50')
    torch.manual_seed(0)
    base = criteria.select('proxyanchor', opt).double()
    torch.manual_seed(0)
    objective = criteria.select('proxyanchor_lsd', opt)
    objective.to(torch.float64)
    _, parts = objective(x, labels, teacher_embeddings=x.detach() + 0.1, epoch=1)
    assert torch.equal(parts['loss_rank'], base(x, labels))


def test_proxies_start_kaiming_normal_fan_out_and_train_at_the_multiplied_rate():
    torch.manual_seed(0)
    opt = make_opt('--lr', '0.0002', n_classes=2000, embed_dim=64)
    objective, groups = criteria.build_objective('proxyanchor', opt, 2000)
    proxies = objective.ranking.proxies
    assert proxies.shape == (2000, 64)
    assert abs(proxies.std().item() / kaiming_fan_out_std(2000) - 1) < 0.02
    assert abs(proxies.mean().item()) < 3 * kaiming_fan_out_std(2000) / np.sqrt(proxies.numel())
    assert len(groups) == 1 and groups[0]['params'] is proxies and groups[0]['lr'] == pytest.approx(0.02)
    assert list(objective.state_dict()) == ['ranking.proxies'] and list(objective.ranking.state_dict()) == ['proxies']


def test_proxies_decay_with_the_networks_weight_decay_as_the_authors_do():
    """The authors' train.py gives the proxies' group only its learning rate, so their optimizer's weight decay
    (--weight-decay, 1e-4) applies to the proxies as to the network; here the network's is --decay."""
    objective, groups = criteria.build_objective('proxyanchor', make_opt('--decay', '1e-4', n_classes=3), 3)
    assert groups[0]['weight_decay'] == 1e-4
    _, groups = criteria.build_objective('proxynca', make_opt('--decay', '1e-4', n_classes=3), 3)
    assert 'weight_decay' not in groups[0]   # every other loss: the optimizer's default (0), as the reference


def test_registry_lists_proxyanchor_and_its_lsd_twin():
    assert 'proxyanchor' in criteria.BASE_LOSS_NAMES and 'proxyanchor_lsd' in criteria.LSD_LOSS_NAMES
    assert not criteria.requires_miner('proxyanchor_lsd')


def test_labels_outside_the_classes_are_one_clear_error():
    x, _ = random_batch(5, labels=[0, 1, 2])
    criterion = criteria.select('proxyanchor', make_opt(n_classes=2)).double()
    with pytest.raises(criteria.CriterionError, match='proxyanchor loss: label 2 is outside'):
        criterion(x, torch.tensor([0, 1, 2]))
