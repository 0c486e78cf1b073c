"""One-line errors for bad `--arch` values and unavailable ImageNet weights; the trainer prints them."""


class UnknownArchitectureError(ValueError):
    """`--arch` names none of the backbones (resnet50, googlenet, bninception, resnet18)."""


class PretrainedWeightsUnavailable(RuntimeError):
    """The ImageNet weights could not be fetched (e.g. no internet); `--not_pretrained` avoids them."""
