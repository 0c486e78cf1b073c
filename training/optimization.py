"""The optimizer and the learning-rate schedule of a run.

* `--optim adam` / `sgd` (the reference's): the network's group (with --fc_lr >= 0 the embedding layer in a group
  of its own) at --lr with L2 weight decay --decay, then the loss's own groups as the loss declares them
  (`Objective.optimizer_groups`).
* `--optim adamw` (timm's recipe): the same groups and learning rates, each split as timm's
  `param_groups_weight_decay` decides: decoupled weight decay --decay on every parameter but biases, norms
  (ndim <= 1) and what the modules name in `no_weight_decay()` (a loss's proxies, a timm model's position
  embeddings and class token), which get none.
* `--scheduler none`; `step` (anything else): MultiStepLR(--tau, --gamma), stepped per epoch, as the reference;
  `cosine`: timm's CosineLRScheduler stepped after every optimizer update (`PerUpdateCosine`), with
  --warmup_epochs of linear warm-up from timm's default warm-up rate, decaying to 0 at the end of --n_epochs.
"""
import functools

import torch

from training.embedding_warmup import embedding_layer

# timm's default --warmup-lr (timm.scheduler.create_scheduler_v2's warmup_lr): the rate of the first update
WARMUP_LR = 1e-5


def network_parameter_groups(model, opt):
    """One group, or with --fc_lr >= 0 the embedding layer in its own group (partitioned by identity).
    Parameters that do not train (--freeze_patch_embed) are left out; every reference backbone trains all."""
    trained = [p for p in model.parameters() if p.requires_grad]
    if opt.fc_lr < 0:
        return [{'params': trained, 'lr': opt.lr, 'weight_decay': opt.decay}]
    head = embedding_layer(model)
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    body = [p for p in trained if id(p) not in head_ids]
    head = [p for p in trained if id(p) in head_ids]
    return [{'params': body, 'lr': opt.lr, 'weight_decay': opt.decay},
            {'params': head, 'lr': opt.fc_lr, 'weight_decay': opt.decay}]


class Trained(torch.nn.Module):
    """The network and the objective as one module, the form timm's parameter-group helpers take;
    `no_weight_decay()` gathers, with their prefixes, the names every submodule declares in its own."""

    def __init__(self, model, objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def no_weight_decay(self):
        names = set()
        for prefix, module in self.named_modules():
            declared = getattr(module, 'no_weight_decay', None)
            if module is not self and callable(declared):
                names |= {prefix + '.' + name for name in declared()}
        return names


def group_parameters(group):
    params = group['params']
    return [params] if isinstance(params, torch.Tensor) else list(params)


def decoupled_decay_groups(groups, trained, weight_decay):
    """Each of `groups` (learning rates kept) split into its undecayed and decayed parameters, as timm's
    `param_groups_weight_decay(trained, weight_decay, no_weight_decay_list=trained.no_weight_decay())` splits them;
    empty groups are left out."""
    import timm.optim
    decided = timm.optim.param_groups_weight_decay(trained, weight_decay,
                                                   no_weight_decay_list=sorted(trained.no_weight_decay()))
    undecayed = {id(p) for group in decided if group['weight_decay'] == 0 for p in group['params']}
    split = []
    for group in groups:
        params = group_parameters(group)
        for decay, members in ((0.0, [p for p in params if id(p) in undecayed]),
                               (weight_decay, [p for p in params if id(p) not in undecayed])):
            if members:
                split.append(dict(group, params=members, weight_decay=decay))
    return split


def optimizer_groups(model, objective, opt):
    """The parameter groups of the network and the objective for --optim (see the module's docstring)."""
    groups = network_parameter_groups(model, opt) + objective.optimizer_groups(opt.decay)
    if opt.optim == 'adamw':
        groups = decoupled_decay_groups(groups, Trained(model, objective), opt.decay)
    return groups


def build_optimizer(param_groups, opt):
    """Adam and SGD couple the weight decay to the gradient (L2), as the reference does; AdamW decouples it
    (each step shrinks the weights by lr·decay), the transformers' recipe."""
    if opt.optim == 'adam':
        return torch.optim.Adam(param_groups)
    if opt.optim == 'adamw':
        return torch.optim.AdamW(param_groups)
    return torch.optim.SGD(param_groups, momentum=0.9)


class PerUpdateCosine:
    """timm's CosineLRScheduler on the update count t = epoch · updates_per_epoch + iteration + 1, set after every
    optimizer update (`after_update`), as timm's train.py calls `step_update(num_updates)`: t_initial = --n_epochs
    epochs and warmup_t = --warmup_epochs epochs of updates. The rate follows from (epoch, iteration) alone, so a
    resumed run continues the same sequence."""

    def __init__(self, optimizer, n_epochs, updates_per_epoch, warmup_epochs):
        from timm.scheduler import CosineLRScheduler
        self.updates_per_epoch = max(1, int(updates_per_epoch))
        self.schedule = CosineLRScheduler(optimizer, t_initial=int(n_epochs) * self.updates_per_epoch, lr_min=0.0,
                                          warmup_t=int(warmup_epochs) * self.updates_per_epoch,
                                          warmup_lr_init=WARMUP_LR, warmup_prefix=False, t_in_epochs=False)

    def step(self):
        """The epoch's end: nothing to do, the rate moves with every update."""

    def after_update(self, epoch, iteration):
        self.schedule.step_update(num_updates=epoch * self.updates_per_epoch + iteration + 1)

    def state_dict(self):
        return {'per_update_cosine': self.schedule.state_dict(), 'updates_per_epoch': self.updates_per_epoch}

    def load_state_dict(self, state):
        if 'per_update_cosine' not in state:
            raise ValueError('--scheduler cosine: the resume state holds a per-epoch schedule, which the per-update '
                             'schedule cannot continue; start the run again')
        self.schedule.load_state_dict(state['per_update_cosine'])
        self.updates_per_epoch = state['updates_per_epoch']


def build_scheduler(optimizer, opt, updates_per_epoch=1):
    """None with --scheduler none; `PerUpdateCosine` with 'cosine' (`updates_per_epoch`: the training loader's
    length); else MultiStepLR(--tau, --gamma), stepped per epoch."""
    if opt.scheduler == 'none':
        return None
    if opt.scheduler == 'cosine':
        return PerUpdateCosine(optimizer, opt.n_epochs, updates_per_epoch, opt.warmup_epochs)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=opt.tau, gamma=opt.gamma)


def update_hook(scheduler, epoch):
    """What the epoch calls after every optimizer update, `hook(iteration)`: the per-update schedule's step,
    None for a schedule stepped per epoch."""
    after_update = getattr(scheduler, 'after_update', None)
    return functools.partial(after_update, epoch) if after_update is not None else None
