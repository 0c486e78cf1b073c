"""NMI of the k-means cluster labels against the classes (scikit-learn, arithmetic normalisation, as the reference)."""


class Metric:
    def __init__(self, cosine=False):
        self.name = 'c_nmi' if cosine else 'nmi'
        self.requires = ['kmeans_nearest_cosine' if cosine else 'kmeans_nearest', 'target_labels']

    def __call__(self, cluster_labels, target_labels):
        # imported here: scikit-learn (with SciPy) takes ~2 s to import, which a run without NMI need not pay
        from sklearn.metrics import normalized_mutual_info_score
        return float(normalized_mutual_info_score(cluster_labels.cpu().numpy(), target_labels.cpu().numpy()))
