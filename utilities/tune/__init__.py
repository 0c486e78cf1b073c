"""Hyperparameter search over class-disjoint cross-validation folds (`python -m utilities.tune`)."""
