"""MAP@R and R-Precision (Musgrave et al. 2020, "A Metric Learning Reality Check").

R_i = number of *other* samples of query i's class. Over the first R_i neighbours:
MAP@R_i = (1/R_i) * sum_{j <= R_i} m_ij * (h_ij / j) and R-Precision_i = h_{i,R_i} / R_i.
Queries without another sample of their class are left out (as pytorch-metric-learning does); the
score is the mean over the remaining queries, NaN if there are none. Against a gallery, R_i is the
number of gallery images of query i's label.
"""
import torch

from metrics.mean_average_precision import class_sizes_per_sample
from metrics.segments import segment_sum


class Metric:
    def __init__(self, kind, cosine=False):
        self.kind = kind
        self.name = ('c_' if cosine else '') + kind
        self.requires = ['neighbour_hits_cosine' if cosine else 'neighbour_hits', 'target_labels']

    def neighbours(self, n_samples, class_sizes, query_in_database=True):
        return int(class_sizes.max()) - int(query_in_database)

    def __call__(self, hits, target_labels):
        others = class_sizes_per_sample(target_labels) - 1 if hits.relevant is None else hits.relevant
        valid = others > 0
        if not valid.any():
            return float('nan')
        inside = hits.rank <= others[hits.query]
        query, rank, order = hits.query[inside], hits.rank[inside], hits.order[inside]
        per_hit = order.double() / rank.double() if self.kind == 'mAP@R' else torch.ones_like(rank, dtype=torch.float64)
        score = segment_sum(per_hit, query, len(others))
        return float((score[valid] / others[valid]).mean())
