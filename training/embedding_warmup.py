"""The embedding warm-up a loss may declare (Proxy-Anchor's, as in its authors' code): for the loss's first
`warmup_epochs` only the embedding layer (`model.model.last_linear`, see `embedding_layer`) and the loss's own
parameters train; the rest of the network is frozen by `requires_grad = False`, so the optimizer skips it (no
gradient, no weight decay, no moment updates). Set at the start of every epoch from the epoch number alone, so
a resumed run freezes exactly as an uninterrupted one."""


def embedding_layer(model):
    """The backbones' embedding layer (`model.model.last_linear`), or None for a network without one."""
    return getattr(getattr(model, 'model', None), 'last_linear', None)


class EmbeddingWarmup:
    def __init__(self, model, epochs, flag='warmup_epochs'):
        self.epochs = int(epochs)
        head = embedding_layer(model)
        if self.epochs > 0 and head is None:
            raise ValueError('--{} {}: this backbone has no embedding layer (model.last_linear) to warm up '
                             'alone; use 0.'.format(flag, self.epochs))
        head_ids = {id(p) for p in head.parameters()} if head is not None else set()
        # only what trains by itself is frozen and released again (a _frozen backbone keeps its own choice)
        self.body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]

    def apply(self, epoch):
        """Freeze the body during the warm-up epochs, release it afterwards."""
        trainable = epoch >= self.epochs
        for parameter in self.body:
            parameter.requires_grad_(trainable)


def for_run(objective, model):
    """The warm-up the objective's loss declares (`objective.warmup_epochs`, set by `objective.warmup_flag`),
    or None where it declares none."""
    if objective.warmup_epochs <= 0:
        return None
    return EmbeddingWarmup(model, objective.warmup_epochs, objective.warmup_flag or 'warmup_epochs')
