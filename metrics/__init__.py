"""Metric registry (metric name -> metric object) and the metric computer.

`select(name, opt)` returns one metric object: `name` (the result key), `requires` (the shared
computations it reads, passed positionally in that order) and, for the retrieval metrics,
`neighbours(n_samples, class_sizes)` (how many nearest neighbours it looks at).
"""
from metrics.computer import MetricComputer, compute_metrics
from metrics.errors import MetricInputError, UnknownMetricError
from metrics.registry import DEFAULT_METRICS, select

__all__ = ['select', 'MetricComputer', 'compute_metrics', 'DEFAULT_METRICS', 'UnknownMetricError',
           'MetricInputError']
