"""Pair-counting F1 of the k-means clustering against the classes, as the reference computes it.

A = same-class pairs, B = same-cluster pairs, T = pairs sharing both; F1 = 2PR/(P+R) with the
reference's P = T/A and R = T/B (swapped names, same F). NaN when T = 0, as in the reference. The
reference's "representative" relabelling only renames clusters, so it is skipped: same value.
"""
import torch


def same_group_pairs(group_sizes):
    sizes = group_sizes.double()
    return float((sizes * (sizes - 1) / 2).sum())


def ratio(numerator, denominator):
    return numerator / denominator if denominator else float('nan')


class Metric:
    def __init__(self, cosine=False):
        self.name = 'c_f1' if cosine else 'f1'
        self.requires = ['kmeans_nearest_cosine' if cosine else 'kmeans_nearest', 'target_labels']

    def __call__(self, cluster_labels, target_labels):
        _, classes, class_sizes = torch.unique(target_labels, return_inverse=True, return_counts=True)
        _, clusters, cluster_sizes = torch.unique(cluster_labels, return_inverse=True, return_counts=True)
        both = classes * len(cluster_sizes) + clusters
        shared_sizes = torch.unique(both, return_counts=True)[1]
        same_class, same_cluster = same_group_pairs(class_sizes), same_group_pairs(cluster_sizes)
        shared = same_group_pairs(shared_sizes)
        precision, recall = ratio(shared, same_class), ratio(shared, same_cluster)
        return ratio(2 * precision * recall, precision + recall)
