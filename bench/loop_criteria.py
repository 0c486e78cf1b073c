"""Reference-style per-anchor implementations of the miners, losses and LSD term, for bench/loss_step.py only.

They follow the reference framework's code shape (criteria.md sources): python loops over anchors or
triplets, one `np.random.choice` per anchor in the miners, one probability row copied to the host per
anchor, and the seed's per-anchor distillation block. Where the reference itself is vectorised
(contrastive, snr, histogram, softmax, softtriplet, arcface, Smooth-AP) its vectorised form is kept,
so the speed-up there measures only the miner and the distillation term. Never used for training.
"""
import numpy as np
import torch
import torch.nn.functional as F


# ----- miners -------------------------------------------------------------------------------------------

def pdist(A):
    prod = torch.mm(A, A.t())
    norm = prod.diag().unsqueeze(1).expand_as(prod)
    return (norm + norm.t() - 2 * prod).clamp(min=0).sqrt()


class DistanceMiner:
    name = 'distance'

    def __init__(self, lower_cutoff=0.5):
        self.lower_cutoff = lower_cutoff

    def inverse_sphere_distances(self, dim, dists, labels, anchor_label):
        log_q_d_inv = ((2.0 - float(dim)) * torch.log(dists)
                       - (float(dim - 3) / 2) * torch.log(1.0 - 0.25 * dists.pow(2)))
        log_q_d_inv[np.where(labels == anchor_label)[0]] = 0
        q_d_inv = torch.exp(log_q_d_inv - torch.max(log_q_d_inv))
        q_d_inv[np.where(labels == anchor_label)[0]] = 0
        q_d_inv = q_d_inv / q_d_inv.sum()
        return q_d_inv.detach().cpu().numpy()

    def __call__(self, batch, labels):
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        bs, dim = len(batch), batch.shape[-1]
        distances = pdist(batch.detach()).clamp(min=self.lower_cutoff)
        anchors, positives, negatives = [], [], []
        for i in range(bs):
            pos = labels == labels[i]
            anchors.append(i)
            q_d_inv = self.inverse_sphere_distances(dim, distances[i], labels, labels[i])
            negatives.append(np.random.choice(bs, p=q_d_inv))
            if np.sum(pos) > 1:
                pos[i] = 0
            positives.append(np.random.choice(np.where(pos)[0]))
        return [[a, p, n] for a, p, n in zip(anchors, positives, negatives)]


class NpairMiner:
    name = 'npair'

    def __call__(self, batch, labels):
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        anchors, positives, negatives = [], [], []
        for i in range(len(batch)):
            pos = labels == labels[i]
            if np.sum(pos) > 1:
                anchors.append(i)
                avail_positive = np.where(pos)[0]
                positives.append(np.random.choice(avail_positive[avail_positive != i]))
                negatives.append(np.where(labels != labels[i])[0])
        return anchors, positives, negatives


class LiftedMiner:
    name = 'lifted'

    def __call__(self, batch, labels):
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        anchors, positives, negatives = [], [], []
        for i in range(len(batch)):
            pos = labels == labels[i]
            if np.sum(pos) > 1:
                anchors.append(i)
                pos[i] = False
                positives.append(np.where(pos)[0])
                negatives.append(np.where(labels != labels[i])[0])
        return anchors, positives, negatives


# ----- losses -------------------------------------------------------------------------------------------

def triplet(batch, labels, miner, opt, state):
    triplets = miner(batch, labels)
    loss = torch.stack([F.relu((batch[a] - batch[p]).pow(2).sum() - (batch[a] - batch[n]).pow(2).sum()
                               + opt.loss_triplet_margin) for a, p, n in triplets])
    return loss.mean()


def margin(batch, labels, miner, opt, state):
    triplets = miner(batch, labels)
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


def contrastive(batch, labels, miner, opt, state):
    triplets = miner(batch, labels)
    a, p, n = ([t[k] for t in triplets] for k in range(3))
    pos = F.relu(F.pairwise_distance(batch[a], batch[p]) - opt.loss_contrastive_pos_margin).mean()
    neg = F.relu(opt.loss_contrastive_neg_margin - F.pairwise_distance(batch[a], batch[n])).mean()
    return pos + neg


def snr(batch, labels, miner, opt, state):
    triplets = miner(batch, labels)
    a, p, n = ([t[k] for t in triplets] for k in range(3))
    pos_snr = torch.var(batch[a] - batch[p], dim=1) / torch.var(batch[a], dim=1)
    neg_snr = torch.var(batch[a] - batch[n], dim=1) / torch.var(batch[a], dim=1)
    reg = torch.mean(torch.abs(torch.sum(batch[a], dim=1)))
    hinge = F.relu(pos_snr - neg_snr + opt.loss_snr_margin)
    reg_lambda = 0.0 if miner.name == 'distance' else opt.loss_snr_reg_lambda
    return torch.sum(hinge) / torch.sum(hinge > 0) + reg_lambda * reg


def quadruplet(batch, labels, miner, opt, state):
    triplets = miner(batch, labels)
    a, p, n = (np.array([t[k] for t in triplets]).reshape(-1, 1) for k in range(3))
    fourth = [np.random.choice(np.arange(len(batch))[idxs]) for idxs in (n != n.T)]
    d_ap = torch.norm(batch[a, :] - batch[p, :], p=2, dim=-1)
    first = F.relu(d_ap - torch.norm(batch[a, :] - batch[n, :], p=2, dim=-1) + opt.loss_quadruplet_margin_alpha_1)
    second = F.relu(d_ap - torch.norm(batch[n, :] - batch[fourth, :], p=2, dim=-1) + opt.loss_quadruplet_margin_alpha_2)
    return first.mean() + second.mean()


def proxynca(batch, labels, miner, opt, state):
    batch = 3 * F.normalize(batch, dim=-1)
    proxies = 3 * F.normalize(state['proxies'].to(batch.dtype), dim=-1)
    class_idxs = torch.arange(len(proxies))
    pos = torch.stack([proxies[c:c + 1, :] for c in labels])
    neg = torch.stack([torch.cat([class_idxs[:c], class_idxs[c + 1:]]) for c in labels])
    neg = torch.stack([proxies[idx, :] for idx in neg])
    d_neg = torch.sum((batch[:, None, :] - neg).pow(2), dim=-1)
    d_pos = torch.sum((batch[:, None, :] - pos).pow(2), dim=-1)
    return torch.mean(d_pos[:, 0] + torch.logsumexp(-d_neg, dim=1))


def npair(batch, labels, miner, opt, state):
    anchors, positives, negatives = miner(batch, labels)
    loss = 0
    for a, p, ns in zip(anchors, positives, negatives):
        inner = batch[a:a + 1][:, None, :].bmm((batch[ns] - batch[p:p + 1][:, None, :]).permute(0, 2, 1))
        loss = loss + torch.mean(torch.log(torch.sum(torch.exp(inner.view(1, -1)), dim=1) + 1)) / len(anchors)
        loss = loss + opt.loss_npair_l2 * torch.mean(torch.norm(batch, p=2, dim=1)) / len(anchors)
    return loss


def angular(batch, labels, miner, opt, state):
    anchors, positives, negatives = miner(batch, labels)
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


def lifted(batch, labels, miner, opt, state):
    anchors, positives, negatives = miner(batch, labels)
    loss = []
    for a, ps, ns in zip(anchors, positives, negatives):
        pos = torch.logsumexp(F.pairwise_distance(batch[a][None], batch[ps]), dim=0)
        neg = torch.logsumexp(opt.loss_lifted_neg_margin - F.pairwise_distance(batch[a][None], batch[ns]), dim=0)
        loss.append(F.relu(pos + neg))
    return torch.mean(torch.stack(loss)) + opt.loss_lifted_l2 * torch.mean(torch.norm(batch, p=2, dim=1))


def multisimilarity(batch, labels, miner, opt, state):
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


def histogram(batch, labels, miner, opt, state):
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


def softmax(batch, labels, miner, opt, state):
    logits = F.linear(batch, F.normalize(state['class_map'].to(batch.dtype), dim=1))
    return F.cross_entropy(logits / opt.loss_softmax_temperature, labels)


def softtriplet(batch, labels, miner, opt, state):
    C, K = opt.n_classes, opt.loss_softtriplet_n_centroids
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


def arcface(batch, labels, miner, opt, state):
    class_map = F.normalize(state['class_map'].to(batch.dtype), dim=1)
    cos = batch.mm(class_map.T).clamp(min=1e-10, max=1 - 1e-10)
    pick = torch.zeros(len(batch), opt.n_classes).bool()
    pick[torch.arange(len(batch)), labels] = 1
    target = cos[pick]
    with_margin = torch.cos(torch.acos(target) + opt.loss_arcface_angular_margin)
    logits = opt.loss_arcface_feature_scale * (cos + pick * (with_margin - target)[:, None])
    return F.cross_entropy(logits, labels)


def ap_loss(batch, labels, miner, opt, state):
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


# ----- the seed's per-anchor distillation block ---------------------------------------------------------

def distillation(batch, teacher_batch, labels, tau, beta):
    teacher_batch = teacher_batch.detach()
    kd = []
    for i in range(len(batch)):
        pos, neg = labels == labels[i], labels != labels[i]
        student = torch.cat([batch[i] @ batch[pos].T, beta * (batch[i] @ batch[neg].T)])
        teacher = torch.cat([teacher_batch[i] @ teacher_batch[pos].T, beta * (teacher_batch[i] @ teacher_batch[neg].T)])
        kd.append(F.kl_div(F.log_softmax(student[None] / tau, dim=1), F.softmax(teacher[None] / tau, dim=1),
                           reduction='batchmean'))
    return torch.stack(kd).mean()


LOSSES = {name: globals()[name] for name in
          ['triplet', 'margin', 'proxynca', 'npair', 'angular', 'contrastive', 'lifted', 'snr',
           'multisimilarity', 'histogram', 'softmax', 'softtriplet', 'arcface', 'quadruplet', 'ap_loss']}
MINERS = {'distance': DistanceMiner, 'npair': NpairMiner, 'lifted': LiftedMiner}
