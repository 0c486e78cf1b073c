"""The bottom layer every other package stands on: device selection (`device`), data-parallel primitives and
global BatchNorm (`distributed`, `distributed_batchnorm`), mixed precision (`precision`) and process-wide
set-up (`process`). It imports only the standard library, numpy and torch (timm lazily, for its BatchNorm +
activation layer); `tests/test_layers.py` checks the layer order of all packages."""
