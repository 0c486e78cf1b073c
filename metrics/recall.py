"""Recall@k: the share of queries with a same-label sample among their k nearest others."""
import torch


class Metric:
    def __init__(self, k, cosine=False):
        self.k = k
        self.name = '{}_recall@{}'.format('c' if cosine else 'e', k)
        self.requires = ['neighbour_hits_cosine' if cosine else 'neighbour_hits']

    def neighbours(self, n_samples, class_sizes):
        return self.k

    def __call__(self, hits):
        found = torch.zeros(hits.n_queries, dtype=torch.bool, device=hits.query.device)
        found[hits.query[hits.rank <= self.k]] = True
        return float(found.double().mean())
