"""The ways a run stops early that the user should read as one line, not as a traceback."""


class TrainingDiverged(RuntimeError):
    """The loss or the embeddings became NaN/inf: the learning rate is almost always too high."""

    def __init__(self, epoch, iteration, what):
        super().__init__('training diverged: {} became non-finite in epoch {} at iteration {}; try a lower --lr. '
                         'Checkpoints and resume state of the last completed epoch are intact.'
                         .format(what, epoch, iteration))
        self.epoch, self.iteration = epoch, iteration


class TrainingInterrupted(RuntimeError):
    """Ctrl-C (or SIGTERM) during an epoch: the run can continue from its last completed epoch."""

    def __init__(self, epoch, iteration):
        super().__init__('interrupted in epoch {} after {} iterations'.format(epoch, iteration))
        self.epoch, self.iteration = epoch, iteration
