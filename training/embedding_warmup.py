"""Proxy-Anchor's warm-up (as in the authors' code): for the first epochs only the embedding layer
(`model.model.last_linear`) and the loss's proxies train; the rest of the network is frozen by
`requires_grad = False`, so the optimizer skips it (no gradient, no weight decay, no moment updates).
Set at the start of every epoch from the epoch number alone, so a resumed run freezes exactly as an
uninterrupted one."""


class EmbeddingWarmup:
    def __init__(self, model, epochs):
        self.epochs = int(epochs)
        head = getattr(getattr(model, 'model', None), 'last_linear', None)
        if self.epochs > 0 and head is None:
            raise ValueError('--loss_proxyanchor_warmup_epochs {}: this backbone has no embedding layer '
                             '(model.last_linear) to warm up alone; use 0.'.format(self.epochs))
        head_ids = {id(p) for p in head.parameters()} if head is not None else set()
        # only what trains by itself is frozen and released again (a _frozen backbone keeps its own choice)
        self.body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]

    def apply(self, epoch):
        """Freeze the body during the warm-up epochs, release it afterwards."""
        trainable = epoch >= self.epochs
        for parameter in self.body:
            parameter.requires_grad_(trainable)


def for_run(opt, model):
    """The warm-up of a Proxy-Anchor run (base or LSD), or None."""
    import criteria
    if criteria.base_name(opt.loss) != 'proxyanchor' or opt.loss_proxyanchor_warmup_epochs <= 0:
        return None
    return EmbeddingWarmup(model, opt.loss_proxyanchor_warmup_epochs)
