"""Slow reference implementations of every loss and of the listwise distillation term, written from their
formulas one anchor, triplet or pair at a time (Python loops, no masks), plus the set-form miner outputs
written the same way. The criteria tests compare the vectorised losses against them, value and gradient;
bench/loss_step.py times the losses against them. Never used for training.

Every function takes the miner's output (or none) explicitly, so the same triplets or sets reach both
implementations. Defaults are the flags' defaults.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


# ----- triplet-form losses: one triplet at a time -------------------------------------------------------

def slow_triplet(x, triplets, margin=0.2):
    total = 0
    for a, p, n in triplets:
        total = total + torch.relu(((x[a] - x[p]) ** 2).sum() - ((x[a] - x[n]) ** 2).sum() + margin)
    return total / len(triplets)


def slow_margin(x, beta, labels, triplets, margin=0.2, nu=0.0, constant=False):
    total, count, beta_sum = 0, 0, 0
    for a, p, n in triplets:
        b = beta if constant else beta[labels[a]]
        pos = torch.relu(torch.sqrt(((x[a] - x[p]) ** 2).sum() + 1e-8) - b + margin)
        neg = torch.relu(b - torch.sqrt(((x[a] - x[n]) ** 2).sum() + 1e-8) + margin)
        total = total + pos + neg
        count += int(pos > 0 or neg > 0)
        beta_sum = beta_sum + b
    loss = total / count if count else total
    if nu:
        loss = loss + nu * (beta if constant else beta_sum)
    return loss


def slow_contrastive(x, triplets, pos_margin=0.0, neg_margin=1.0):
    pos, neg = 0, 0
    for a, p, n in triplets:
        pos = pos + torch.relu(torch.sqrt(((x[a] - x[p] + 1e-6) ** 2).sum()) - pos_margin)
        neg = neg + torch.relu(neg_margin - torch.sqrt(((x[a] - x[n] + 1e-6) ** 2).sum()))
    return pos / len(triplets) + neg / len(triplets)


def unbiased_var(v):
    return ((v - v.mean()) ** 2).sum() / (len(v) - 1)


def slow_snr(x, triplets, margin=0.2, reg_lambda=0.005):
    hinges, reg = [], 0
    for a, p, n in triplets:
        rho_pos = unbiased_var(x[a] - x[p]) / unbiased_var(x[a])
        rho_neg = unbiased_var(x[a] - x[n]) / unbiased_var(x[a])
        hinges.append(torch.relu(rho_pos - rho_neg + margin))
        reg = reg + torch.abs(x[a].sum())
    active = sum(int(h > 0) for h in hinges)
    hinge_part = sum(hinges) / active if active else sum(hinges)
    return hinge_part + reg_lambda * reg / len(triplets)


def norm(v):
    return torch.sqrt((v ** 2).sum()) if bool((v != 0).any()) else (v * 0).sum()


def slow_quadruplet(x, triplets, fourth, alpha_1=0.2, alpha_2=0.2):
    T = len(triplets)
    first, second = 0, 0
    for t, (a, p, n) in enumerate(triplets):
        first = first + torch.relu(norm(x[a] - x[p]) - norm(x[a] - x[n]) + alpha_1)
        for u in range(T):
            second = second + torch.relu(norm(x[a] - x[p]) - norm(x[n] - x[fourth[u]]) + alpha_2)
    return first / T + second / T ** 2


# ----- set-form miners and losses: one anchor at a time -------------------------------------------------

def npair_miner_output(labels, seed):
    """The npair miner's output: every anchor with a positive, one random positive, all other-label positions
    as negatives."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    anchors, positives, negatives = [], [], []
    for i in range(len(labels)):
        same = np.flatnonzero((labels == labels[i]) & (np.arange(len(labels)) != i))
        if len(same):
            anchors.append(i)
            positives.append(int(rng.choice(same)))
            negatives.append(np.flatnonzero(labels != labels[i]))
    return anchors, positives, negatives


def lifted_miner_output(labels):
    """The lifted miner's output: anchors with a positive; all other same-label positions; all other-label
    positions."""
    labels = np.asarray(labels)
    anchors = [i for i in range(len(labels)) if (labels == labels[i]).sum() > 1]
    positives = [np.flatnonzero((labels == labels[i]) & (np.arange(len(labels)) != i)) for i in anchors]
    negatives = [np.flatnonzero(labels != labels[i]) for i in anchors]
    return anchors, positives, negatives


def mean_norm(x):
    return sum(torch.sqrt((x[j] ** 2).sum()) for j in range(len(x))) / len(x)


def slow_npair(x, out, l2=0.005):
    anchors, positives, negatives = out
    total = 0
    for a, p, ns in zip(*out):
        inner = sum(torch.exp(x[a] @ x[n] - x[a] @ x[p]) for n in ns)
        total = total + torch.log(1 + inner)
    return total / len(anchors) + l2 * mean_norm(x)


def slow_angular(x, out, alpha=45.0, lam=2.0, l2=0.005):
    anchors = out[0]
    t2 = math.tan(alpha * math.pi / 180) ** 2
    unit = [x[j] / torch.sqrt((x[j] ** 2).sum()) for j in range(len(x))]
    npair, angular = 0, 0
    for a, p, ns in zip(*out):
        npair = npair + torch.log(1 + sum(torch.exp(torch.clamp(x[a] @ x[n] - x[a] @ x[p], -50, 50)) for n in ns))
        angular = angular + torch.log(1 + sum(
            torch.exp(4 * t2 * (unit[a] + unit[p]) @ unit[n] - 2 * (1 + t2) * unit[a] @ unit[p]) for n in ns))
    return npair / len(anchors) + lam * angular / len(anchors) + l2 * mean_norm(x)


def d_eps(u, v):
    return torch.sqrt(((u - v + 1e-6) ** 2).sum())


def slow_lifted(x, out, margin=1.0, l2=0.005):
    anchors = out[0]
    total = 0
    for a, ps, ns in zip(*out):
        pos = torch.log(sum(torch.exp(d_eps(x[a], x[p])) for p in ps))
        neg = torch.log(sum(torch.exp(margin - d_eps(x[a], x[n])) for n in ns)) if len(ns) else -math.inf
        total = total + torch.relu(pos + neg)
    return total / len(anchors) + l2 * mean_norm(x)


# ----- miner-free losses: one sample (or pair) at a time --------------------------------------------------

def unit(v):
    return v / torch.sqrt((v ** 2).sum())


def cross_entropy(logits, target):
    return -logits[target] + torch.log(sum(torch.exp(z) for z in logits))


def slow_proxynca(x, proxies, labels):
    n_classes = len(proxies)
    q = [3 * unit(proxies[c]) for c in range(n_classes)]
    total = 0
    for i in range(len(x)):
        b = 3 * unit(x[i])
        delta = [((b - q[c]) ** 2).sum() for c in range(n_classes)]
        others = [-delta[c] for c in range(n_classes) if c != labels[i]]
        total = total + delta[labels[i]] + torch.log(sum(torch.exp(v) for v in others))
    return total / len(x)


def slow_softmax(x, class_map, labels, temperature=0.05):
    w = [unit(class_map[c]) for c in range(len(class_map))]
    total = 0
    for i in range(len(x)):
        logits = torch.stack([x[i] @ w[c] / temperature for c in range(len(w))])
        total = total + cross_entropy(logits, labels[i])
    return total / len(x)


def slow_softtriplet(x, centroids, labels, n_classes, K, delta=0.01, gamma=0.1, lam=8.0, rho=0.2):
    D = centroids.shape[0]
    rows = [unit(centroids[d]) for d in range(D)]               # row-wise normalisation, as the reference
    c_hat = torch.stack(rows)
    total = 0
    for i in range(len(x)):
        sigma = [[x[i] @ c_hat[:, c * K + k] for k in range(K)] for c in range(n_classes)]
        u = []
        for c in range(n_classes):
            value = 0
            for k in range(K):
                weight = torch.exp(gamma * sigma[c][k]) / sum(torch.exp(gamma * sigma[cc][k])
                                                              for cc in range(n_classes))
                value = value + weight * sigma[c][k]
            u.append(value)
        logits = torch.stack([lam * (u[c] - delta * float(c == int(labels[i]))) for c in range(n_classes)])
        total = total + cross_entropy(logits, labels[i])
    loss = total / len(x)
    if K == 1:
        return loss
    reg = 0
    for c in range(n_classes):
        for k in range(K):
            for k2 in range(k + 1, K):
                reg = reg + torch.sqrt(2.00001 - 2 * c_hat[:, c * K + k] @ c_hat[:, c * K + k2])
    return loss + rho * reg / (n_classes * K * (K - 1))


def slow_arcface(x, class_map, labels, margin=0.5, scale=16.0):
    w = [unit(class_map[c]) for c in range(len(class_map))]
    total = 0
    for i in range(len(x)):
        cosines = [torch.clamp(x[i] @ w[c], 1e-10, 1 - 1e-10) for c in range(len(w))]
        logits = [scale * cos for cos in cosines]
        logits[labels[i]] = scale * torch.cos(torch.acos(cosines[labels[i]]) + margin)
        total = total + cross_entropy(torch.stack(logits), labels[i])
    return total / len(x)


def slow_multisimilarity(x, labels, alpha=2.0, beta=40.0, eps=0.1, lam=0.5):
    S = x @ x.T
    terms = []
    for i in range(len(x)):
        pos = [j for j in range(len(x)) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(len(x)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        min_pos = min(S[i, j].item() for j in pos)
        max_neg = max(S[i, j].item() for j in neg)
        kept_neg = [n for n in neg if S[i, n].item() + eps > min_pos]
        kept_pos = [p for p in pos if S[i, p].item() - eps < max_neg]
        if not kept_neg or not kept_pos:
            continue
        pos_term = torch.log(1 + sum(torch.exp(-alpha * (S[i, p] - lam)) for p in kept_pos)) / alpha
        neg_term = torch.log(1 + sum(torch.exp(beta * (S[i, n] - lam)) for n in kept_neg)) / beta
        terms.append(pos_term + neg_term)
    return sum(terms) / len(terms), len(terms)


def slow_histogram(x, labels, nbins):
    delta = 2 / (nbins - 1)
    grid = [-1 + k * delta for k in range(nbins)]
    hist_pos, hist_neg = [0] * nbins, [0] * nbins
    n_pos = n_neg = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            s = x[i] @ x[j]
            weights = [torch.relu(1 - torch.abs(s - t) / delta) for t in grid]
            if labels[i] == labels[j]:
                hist_pos = [h + w for h, w in zip(hist_pos, weights)]
                n_pos += 1
            else:
                hist_neg = [h + w for h, w in zip(hist_neg, weights)]
                n_neg += 1
    loss = 0
    for l in range(nbins):
        loss = loss + hist_neg[l] / n_neg * sum(hist_pos[k] / n_pos for k in range(l + 1))
    return loss


def slow_smooth_ap(x, labels, tau):
    def g(z):
        return 1 / (1 + torch.exp(torch.clamp(-z / tau, -50, 50)))
    S = x @ x.T
    B = len(x)
    ap_sum = 0
    for q in range(B):
        positives = [j for j in range(B) if labels[j] == labels[q]]       # includes q, as the official code
        ap = 0
        for j in positives:
            r_all = 1 + sum(g(S[q, k] - S[q, j]) for k in range(B) if k != j)
            r_pos = 1 + sum(g(S[q, k] - S[q, j]) for k in positives if k != j)
            ap = ap + r_pos / r_all
        ap_sum = ap_sum + ap / len(positives)
    return 1 - ap_sum / B


# ----- the reference's code shape: one anchor (or triplet) per Python iteration, vector ops inside -------
# Fast enough for a bs-112 benchmark. Each takes the miner's output `mined`, the option namespace and
# `state`, a dict of the loss's parameters by their state_dict keys (plus `reg_lambda` for snr and an
# optional fixed `fourth` for quadruplet). Where the reference itself is vectorised (contrastive, snr,
# histogram, softmax, softtriplet, arcface) its vectorised form is kept.

def shaped_triplet(batch, labels, mined, opt, state):
    triplets = mined
    loss = torch.stack([F.relu((batch[a] - batch[p]).pow(2).sum() - (batch[a] - batch[n]).pow(2).sum()
                               + opt.loss_triplet_margin) for a, p, n in triplets])
    return loss.mean()


def shaped_margin(batch, labels, mined, opt, state):
    triplets = mined
    d_ap, d_an = [], []
    for a, p, n in triplets:
        d_ap.append(((batch[a] - batch[p]).pow(2).sum() + 1e-8).pow(1 / 2))
        d_an.append(((batch[a] - batch[n]).pow(2).sum() + 1e-8).pow(1 / 2))
    d_ap, d_an = torch.stack(d_ap), torch.stack(d_an)
    beta = torch.stack([state['beta'][labels[t[0]]] for t in triplets]).to(batch.dtype)
    pos_loss = F.relu(d_ap - beta + opt.loss_margin_margin)
    neg_loss = F.relu(beta - d_an + opt.loss_margin_margin)
    pair_count = torch.sum((pos_loss > 0.) + (neg_loss > 0.)).to(batch.dtype)
    return torch.sum(pos_loss + neg_loss) / pair_count if pair_count else torch.sum(pos_loss + neg_loss)


def shaped_contrastive(batch, labels, mined, opt, state):
    triplets = mined
    a, p, n = ([t[k] for t in triplets] for k in range(3))
    pos = F.relu(F.pairwise_distance(batch[a], batch[p]) - opt.loss_contrastive_pos_margin).mean()
    neg = F.relu(opt.loss_contrastive_neg_margin - F.pairwise_distance(batch[a], batch[n])).mean()
    return pos + neg


def shaped_snr(batch, labels, mined, opt, state):
    triplets = mined
    a, p, n = ([t[k] for t in triplets] for k in range(3))
    pos_snr = torch.var(batch[a] - batch[p], dim=1) / torch.var(batch[a], dim=1)
    neg_snr = torch.var(batch[a] - batch[n], dim=1) / torch.var(batch[a], dim=1)
    reg = torch.mean(torch.abs(torch.sum(batch[a], dim=1)))
    hinge = F.relu(pos_snr - neg_snr + opt.loss_snr_margin)
    reg_lambda = state.get('reg_lambda', opt.loss_snr_reg_lambda)
    return torch.sum(hinge) / torch.sum(hinge > 0) + reg_lambda * reg


def shaped_quadruplet(batch, labels, mined, opt, state):
    triplets = mined
    a, p, n = (np.array([t[k] for t in triplets]).reshape(-1, 1) for k in range(3))
    fourth = state.get('fourth')
    if fourth is None:
        fourth = [np.random.choice(np.arange(len(batch))[idxs]) for idxs in (n != n.T)]
    d_ap = torch.norm(batch[a, :] - batch[p, :], p=2, dim=-1)
    first = F.relu(d_ap - torch.norm(batch[a, :] - batch[n, :], p=2, dim=-1) + opt.loss_quadruplet_margin_alpha_1)
    second = F.relu(d_ap - torch.norm(batch[n, :] - batch[fourth, :], p=2, dim=-1) + opt.loss_quadruplet_margin_alpha_2)
    return first.mean() + second.mean()


def shaped_proxynca(batch, labels, mined, opt, state):
    batch = 3 * F.normalize(batch, dim=-1)
    proxies = 3 * F.normalize(state['proxies'].to(batch.dtype), dim=-1)
    class_idxs = torch.arange(len(proxies))
    pos = torch.stack([proxies[c:c + 1, :] for c in labels])
    neg = torch.stack([torch.cat([class_idxs[:c], class_idxs[c + 1:]]) for c in labels])
    neg = torch.stack([proxies[idx, :] for idx in neg])
    d_neg = torch.sum((batch[:, None, :] - neg).pow(2), dim=-1)
    d_pos = torch.sum((batch[:, None, :] - pos).pow(2), dim=-1)
    return torch.mean(d_pos[:, 0] + torch.logsumexp(-d_neg, dim=1))


def shaped_npair(batch, labels, mined, opt, state):
    anchors, positives, negatives = mined
    loss = 0
    for a, p, ns in zip(anchors, positives, negatives):
        inner = batch[a:a + 1][:, None, :].bmm((batch[ns] - batch[p:p + 1][:, None, :]).permute(0, 2, 1))
        loss = loss + torch.mean(torch.log(torch.sum(torch.exp(inner.view(1, -1)), dim=1) + 1)) / len(anchors)
        loss = loss + opt.loss_npair_l2 * torch.mean(torch.norm(batch, p=2, dim=1)) / len(anchors)
    return loss


def shaped_angular(batch, labels, mined, opt, state):
    anchors, positives, negatives = mined
    t2 = np.tan(np.pi / 180 * opt.loss_angular_alpha) ** 2
    unit = F.normalize(batch, dim=-1)
    npair_loss, angular_loss = 0, 0
    for a, p, ns in zip(anchors, positives, negatives):
        f = 4 * t2 * (unit[a] + unit[p]) @ unit[ns].T - 2 * (1 + t2) * unit[a] @ unit[p]
        g = (batch[a] @ (batch[ns] - batch[p]).T).clamp(max=50, min=-50)
        angular_loss = angular_loss + torch.log(torch.sum(torch.exp(f)) + 1)
        npair_loss = npair_loss + torch.log(torch.sum(torch.exp(g)) + 1)
    n = len(anchors)
    return npair_loss / n + opt.loss_angular_npair_ang_weight * angular_loss / n \
        + opt.loss_angular_npair_l2 * torch.mean(torch.norm(batch, p=2, dim=1))


def shaped_lifted(batch, labels, mined, opt, state):
    anchors, positives, negatives = mined
    loss = []
    for a, ps, ns in zip(anchors, positives, negatives):
        pos = torch.logsumexp(F.pairwise_distance(batch[a][None], batch[ps]), dim=0)
        neg = torch.logsumexp(opt.loss_lifted_neg_margin - F.pairwise_distance(batch[a][None], batch[ns]), dim=0)
        loss.append(F.relu(pos + neg))
    return torch.mean(torch.stack(loss)) + opt.loss_lifted_l2 * torch.mean(torch.norm(batch, p=2, dim=1))


def shaped_multisimilarity(batch, labels, mined, opt, state):
    similarity = batch.mm(batch.T)
    loss = []
    for i in range(len(batch)):
        pos_idxs = labels == labels[i]
        pos_idxs[i] = 0
        neg_idxs = labels != labels[i]
        anchor_pos_sim = similarity[i][pos_idxs]
        anchor_neg_sim = similarity[i][neg_idxs]
        neg_keep = (anchor_neg_sim + opt.loss_multisimilarity_margin) > torch.min(anchor_pos_sim)
        pos_keep = (anchor_pos_sim - opt.loss_multisimilarity_margin) < torch.max(anchor_neg_sim)
        if not torch.sum(neg_keep) or not torch.sum(pos_keep):
            continue
        alpha, beta, lam = (opt.loss_multisimilarity_pos_weight, opt.loss_multisimilarity_neg_weight,
                            opt.loss_multisimilarity_thresh)
        pos_term = 1. / alpha * torch.log(1 + torch.sum(torch.exp(-alpha * (anchor_pos_sim[pos_keep] - lam))))
        neg_term = 1. / beta * torch.log(1 + torch.sum(torch.exp(beta * (anchor_neg_sim[neg_keep] - lam))))
        loss.append(pos_term + neg_term)
    return torch.mean(torch.stack(loss))


def shaped_histogram(batch, labels, mined, opt, state):
    nbins = opt.loss_histogram_nbins
    delta = 2 / (nbins - 1)
    bs = len(labels)
    similarity = batch.mm(batch.T)
    label_eqs = (labels.repeat(bs, 1) == labels.view(-1, 1).repeat(1, bs))
    sim_inds = torch.triu(torch.ones(similarity.size()), 1).bool()
    pos = label_eqs[sim_inds]
    sim = similarity[sim_inds]
    t = torch.arange(-1, 1 + delta / 2, delta, dtype=batch.dtype)
    weights = F.relu(1 - (sim[None, :] - t[:, None]).abs() / delta)
    hist_pos = weights[:, pos].sum(1) / pos.sum()
    hist_neg = weights[:, ~pos].sum(1) / (~pos).sum()
    cdf = torch.tril(torch.ones(nbins, nbins, dtype=batch.dtype)).mm(hist_pos[:, None])[:, 0]
    return torch.sum(hist_neg * cdf)


def shaped_softmax(batch, labels, mined, opt, state):
    logits = F.linear(batch, F.normalize(state['class_map'].to(batch.dtype), dim=1))
    return F.cross_entropy(logits / opt.loss_softmax_temperature, labels)


def shaped_softtriplet(batch, labels, mined, opt, state):
    K = opt.loss_softtriplet_n_centroids
    C = state['intra_class_centroids'].shape[1] // K
    centroids = F.normalize(state['intra_class_centroids'].to(batch.dtype), dim=1)
    sim = batch.mm(centroids).reshape(-1, C, K)
    weight = torch.softmax(opt.loss_softtriplet_gamma * sim, dim=1)
    per_class = torch.sum(weight * sim, dim=-1)
    margin = torch.zeros(per_class.shape, dtype=batch.dtype)
    margin[torch.arange(len(batch)), labels] = opt.loss_softtriplet_margin_delta
    loss = F.cross_entropy(opt.loss_softtriplet_lambda * (per_class - margin), labels)
    reg_indices = state.get('reg_indices')
    if reg_indices is None:
        reg_indices = torch.zeros((C * K, C * K), dtype=torch.bool)
        for i in range(C):
            for j in range(K):
                reg_indices[i * K + j, i * K + j + 1:(i + 1) * K] = 1
        state['reg_indices'] = reg_indices
    gram = centroids.T.mm(centroids)
    reg = torch.sum(torch.sqrt(2.00001 - 2 * gram[reg_indices])) / (C * K * (K - 1.))
    return loss + opt.loss_softtriplet_reg_weight * reg


def shaped_arcface(batch, labels, mined, opt, state):
    class_map = F.normalize(state['class_map'].to(batch.dtype), dim=1)
    cos = batch.mm(class_map.T).clamp(min=1e-10, max=1 - 1e-10)
    pick = torch.zeros(len(batch), len(class_map)).bool()
    pick[torch.arange(len(batch)), labels] = 1
    target = cos[pick]
    with_margin = torch.cos(torch.acos(target) + opt.loss_arcface_angular_margin)
    logits = opt.loss_arcface_feature_scale * (cos + pick * (with_margin - target)[:, None])
    return F.cross_entropy(logits, labels)


def shaped_ap_loss(batch, labels, mined, opt, state):
    bs = len(batch)
    mask = 1.0 - torch.eye(bs, dtype=batch.dtype)
    mask = mask.unsqueeze(dim=0).repeat(bs, 1, 1)
    sim_all = batch.mm(batch.T)
    sim_diff = sim_all.unsqueeze(dim=1).repeat(1, bs, 1) - sim_all.unsqueeze(dim=2).repeat(1, 1, bs)
    sim_sg = torch.sigmoid((sim_diff / 0.01).clamp(-50, 50)) * mask
    sim_all_rk = torch.sum(sim_sg, dim=-1) + 1
    ap = 0
    for q in range(bs):
        same = labels == labels[q]
        pos_rk = torch.sum(sim_sg[q][same][:, same], dim=-1) + 1
        ap = ap + torch.mean(pos_rk / sim_all_rk[q][same])
    return 1 - ap / bs


SHAPED_LOSSES = {name: globals()['shaped_' + name] for name in
                 ['triplet', 'margin', 'proxynca', 'npair', 'angular', 'contrastive', 'lifted', 'snr',
                  'multisimilarity', 'histogram', 'softmax', 'softtriplet', 'arcface', 'quadruplet', 'ap_loss']}
from criteria_reference_modern import shaped_proxyanchor  # noqa: E402  (the losses added since, in their module)
SHAPED_LOSSES['proxyanchor'] = shaped_proxyanchor


# ----- the listwise distillation term --------------------------------------------------------------------

def seed_row_kd(student, teacher, labels, tau, beta):
    """The KD as the seed writes it: per anchor, same-label entries (self included) then the others, the
    others scaled by β, KL-divergence with batchmean on a 1×B row, mean over anchors."""
    teacher = teacher.detach()
    labels = torch.as_tensor(labels)
    rows = []
    for i in range(len(student)):
        same, other = labels == labels[i], labels != labels[i]
        s = torch.cat([student[same] @ student[i], beta * (student[other] @ student[i])])
        t = torch.cat([teacher[same] @ teacher[i], beta * (teacher[other] @ teacher[i])])
        log_q = torch.log_softmax(s[None] / tau, dim=1)
        p = torch.softmax(t[None] / tau, dim=1)
        rows.append(torch.nn.functional.kl_div(log_q, p, reduction='batchmean'))
    return torch.stack(rows).mean()
