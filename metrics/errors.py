"""One-line errors for bad metric names and bad evaluation inputs."""


class UnknownMetricError(NotImplementedError):
    """A name in --evaluation_metrics that the registry does not know or cannot parse."""


class MetricInputError(ValueError):
    """Embeddings or labels the metrics cannot be computed on."""
