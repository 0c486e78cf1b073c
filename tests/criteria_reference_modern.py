"""Slow reference implementations of Proxy-Anchor and of the pair losses against a cross-batch memory,
written from the papers' formulas one proxy, anchor or pair at a time (Python loops, no masks). The tests
compare the vectorised losses against them, value and gradient; bench/loss_step.py times against them.
Never used for training.
"""
import math

import torch


def slow_proxyanchor(x, proxies, labels, alpha=32.0, delta=0.1):
    """Kim et al. 2020, eq. 4: proxies with positives in the batch average the positive term, all proxies
    the negative one; s the cosine similarity."""
    labels = [int(label) for label in labels]
    unit_x = [v / torch.sqrt((v * v).sum()) for v in x]
    unit_p = [p / torch.sqrt((p * p).sum()) for p in proxies]
    positive_total, negative_total, with_positives = 0, 0, 0
    for c, p in enumerate(unit_p):
        positive_sum, negative_sum, has_positive = 0, 0, False
        for v, label in zip(unit_x, labels):
            s = (v * p).sum()
            if label == c:
                positive_sum = positive_sum + torch.exp(-alpha * (s - delta))
                has_positive = True
            else:
                negative_sum = negative_sum + torch.exp(alpha * (s + delta))
        if has_positive:
            positive_total = positive_total + torch.log(1 + positive_sum)
            with_positives += 1
        negative_total = negative_total + torch.log(1 + negative_sum)
    return positive_total / with_positives + negative_total / len(unit_p)


def slow_multisimilarity_memory(x, labels, memory, memory_labels, alpha=2.0, beta=40.0, eps=0.1, lam=0.5):
    """Multi-similarity (Wang et al. 2019) with each batch row i compared with every other batch row and
    every memory entry: pairs (i, j), j ≠ i, mined against the hardest pair of the whole reference set."""
    reference = list(x) + list(memory)
    reference_labels = [int(label) for label in labels] + [int(label) for label in memory_labels]
    terms = []
    for i in range(len(x)):
        similarities = [(x[i] * r).sum() for r in reference]
        pos = [j for j in range(len(reference)) if j != i and reference_labels[j] == int(labels[i])]
        neg = [j for j in range(len(reference)) if reference_labels[j] != int(labels[i])]
        if not pos or not neg:
            continue
        min_pos = min(similarities[j].item() for j in pos)
        max_neg = max(similarities[j].item() for j in neg)
        kept_neg = [n for n in neg if similarities[n].item() + eps > min_pos]
        kept_pos = [p for p in pos if similarities[p].item() - eps < max_neg]
        if not kept_neg or not kept_pos:
            continue
        pos_term = torch.log(1 + sum(torch.exp(-alpha * (similarities[p] - lam)) for p in kept_pos)) / alpha
        neg_term = torch.log(1 + sum(torch.exp(beta * (similarities[n] - lam)) for n in kept_neg)) / beta
        terms.append(pos_term + neg_term)
    return sum(terms) / len(terms)


def kaiming_fan_out_std(n_classes):
    """std of torch's kaiming_normal_(mode='fan_out') on an (n_classes, D) tensor: gain √2 over √fan_out,
    fan_out being the number of rows."""
    return math.sqrt(2.0) / math.sqrt(n_classes)


def shaped_proxyanchor(batch, labels, mined, opt, state):
    """The authors' code shape (Proxy-Anchor's losses.py): exp, masked sums over the batch, log(1 + ·)."""
    def l2_norm(v):
        return v / torch.sqrt((v ** 2).sum(dim=1, keepdim=True) + 1e-12)
    proxies = state['proxies'].to(batch.dtype)
    n_classes = len(proxies)
    cos = torch.nn.functional.linear(l2_norm(batch), l2_norm(proxies))
    p_one_hot = torch.nn.functional.one_hot(torch.as_tensor(labels), n_classes).to(batch.dtype)
    n_one_hot = 1 - p_one_hot
    pos_exp = torch.exp(-opt.loss_proxyanchor_alpha * (cos - opt.loss_proxyanchor_delta))
    neg_exp = torch.exp(opt.loss_proxyanchor_alpha * (cos + opt.loss_proxyanchor_delta))
    with_pos_proxies = torch.nonzero(p_one_hot.sum(dim=0) != 0).squeeze(dim=1)
    p_sim_sum = torch.where(p_one_hot == 1, pos_exp, torch.zeros_like(pos_exp)).sum(dim=0)
    n_sim_sum = torch.where(n_one_hot == 1, neg_exp, torch.zeros_like(neg_exp)).sum(dim=0)
    return torch.log(1 + p_sim_sum).sum() / len(with_pos_proxies) + torch.log(1 + n_sim_sum).sum() / n_classes
