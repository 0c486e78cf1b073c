"""Reference-style per-anchor miners for bench/loss_step.py, and the slow loss forms it times the losses against.

The miners follow the reference framework's code shape: Python loops over anchors, one `np.random.choice` per
anchor, one probability row copied to the host per anchor. The losses and the seed's per-anchor distillation
block come from tests/criteria_reference.py, the one module of slow reference implementations, which the
criteria tests check against the vectorised losses. Never used for training.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests'))

from criteria_reference import SHAPED_LOSSES, seed_row_kd  # noqa: E402


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


LOSSES = SHAPED_LOSSES
distillation = seed_row_kd
MINERS = {'distance': DistanceMiner, 'npair': NpairMiner, 'lifted': LiftedMiner}
