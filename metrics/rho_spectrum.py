"""Spectral decay rho(Phi) of the embeddings (Roth et al. 2020).

The singular values are the exact ones (computed once per feature set and shared); the reference's
TruncatedSVD(embed_dim - 1, randomised, 10 oversamples) spans the full column space whenever
embed_dim - 1 + 10 >= D, so it returns these same values up to float rounding, on both paths.
k = 0 returns the normalised spectrum p (an array); k < 0 gives KL(p || uniform), k > 0 KL(uniform || p),
after dropping the first |k| - 1 values. The KL divergence is scipy.stats.entropy(p, q)'s (the reference's call),
written out: SciPy's stats took ~1.3 s to import in every run that computes the spectrum, a default metric;
tests/test_metrics_dists_spectrum.py compares the two.
"""
import numpy as np


def relative_entropy(p, q):
    """KL(p || q) of two non-negative vectors, each normalised to sum 1 (scipy.stats.entropy(p, q), term by term
    scipy.special.rel_entr): terms with p = 0 are 0, with p > 0 = q infinite, with a NaN NaN."""
    p, q = p / np.sum(p), q / np.sum(q)
    with np.errstate(divide='ignore', invalid='ignore'):
        terms = np.where((p > 0) & (q > 0), p * np.log(p / q),
                         np.where((p == 0) & (q >= 0), 0.0, np.where(np.isnan(p) | np.isnan(q), np.nan, np.inf)))
    return float(np.sum(terms))


class Metric:
    def __init__(self, mode, embed_dim=None):
        self.mode = mode
        self.embed_dim = embed_dim
        self.name = 'rho_spectrum@{}'.format(mode)
        self.requires = ['singular_values']

    def __call__(self, singular_values):
        s = np.asarray(singular_values, dtype=np.float64)
        n_components = (self.embed_dim or len(s)) - 1
        s = np.concatenate([s[:n_components], np.zeros(max(0, n_components - len(s)))])
        if self.mode != 0:
            s = s[abs(self.mode) - 1:]
        if len(s) == 0:
            return 0.0
        spectrum = s / s.sum()
        uniform = np.full(len(s), 1.0 / len(s))
        if self.mode == 0:
            return spectrum
        if self.mode < 0:
            return relative_entropy(spectrum, uniform)
        return relative_entropy(uniform, spectrum)
