"""Recall@k: the share of queries with a same-label sample among their k nearest others (any k: In-Shop's
customary 1/10/20/30/40, iNaturalist's 1/4/16/32). Against a gallery, a query whose label the gallery
lacks counts as a miss."""
import torch


class Metric:
    def __init__(self, k, cosine=False):
        self.k = k
        self.name = '{}_recall@{}'.format('c' if cosine else 'e', k)
        self.requires = ['neighbour_hits_cosine' if cosine else 'neighbour_hits']

    def neighbours(self, n_samples, class_sizes, query_in_database=True):
        return self.k

    def __call__(self, hits):
        found = torch.zeros(hits.n_queries, dtype=torch.bool, device=hits.query.device)
        found[hits.query[hits.rank <= self.k]] = True
        return float(found.double().mean())
