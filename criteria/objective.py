"""What the training loop optimises: a ranking loss, optionally composed with listwise self-distillation.

    total = ranking + w(e)·KD,   w(e) = (e / N)·α·τ²   (the LSD paper's objective; w = 0 without LSD)

`Objective` is a plain object, not a module: the ranking loss is the `ranking` module and everything
checkpointed is its state (the reference's keys: `beta`, `proxies`, ...). The methods below that a module
would have delegate to `ranking` explicitly; nothing else is forwarded, so assigning an attribute on the
objective never changes the ranking loss.
"""
import contextlib

import torch

from criteria.common import CriterionError

RANKING_PREFIX = 'ranking.'


def full_precision(tensor):
    """Half-precision embeddings (autocast) as float32, so losses, miners and KD run in float32; float32
    and float64 are kept as they are."""
    if tensor is not None and tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
        return tensor.float()
    return tensor


def autocast_off(device):
    """Autocast disabled on `device`, so matrix products inside the losses are not re-cast to half."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to disable
        return contextlib.nullcontext()


class Objective:
    """`objective(embeddings, labels, teacher_embeddings=None, epoch=0) -> (total, parts)`.

    `parts` holds 0-d tensors named by the Train log keys: `{'loss'}` for a baseline, `{'loss', 'loss_rank',
    'loss_kd'}` for LSD. Where w(e) = 0 the total is the ranking tensor itself and KD is still reported,
    computed without gradient; the teacher may then be None (loss_kd is 0)."""

    def __init__(self, name, ranking, distillation=None, schedule=None, memory=None):
        if (distillation is None) != (schedule is None):
            raise CriterionError('{}: an LSD objective needs both the distillation term and its weight '
                                 'schedule'.format(name))
        self.name = name
        self.ranking = ranking
        self.distillation = distillation
        self.schedule = schedule
        self.is_lsd = distillation is not None
        # a cross-batch memory widens the ranking loss only; the distillation term stays on the batch
        self.memory = memory

    @property
    def part_names(self):
        """The Train log keys of `parts`, in the reference's column order."""
        return ('loss', 'loss_rank', 'loss_kd') if self.is_lsd else ('loss',)

    def distillation_weight(self, epoch):
        """w(e); 0 for a baseline."""
        return self.schedule(epoch) if self.is_lsd else 0.0

    def needs_teacher(self, epoch):
        """Whether the loop must run the teacher this epoch: only where the KD term is weighted."""
        return self.is_lsd and self.distillation_weight(epoch) != 0

    def __call__(self, embeddings, labels, teacher_embeddings=None, epoch=0):
        embeddings, teacher_embeddings = full_precision(embeddings), full_precision(teacher_embeddings)
        with autocast_off(embeddings.device):
            return self._compose(embeddings, labels, teacher_embeddings, epoch)

    def _compose(self, embeddings, labels, teacher, epoch):
        if not self.is_lsd:
            if teacher is not None:
                raise CriterionError('{} is not an LSD loss: it takes no teacher embeddings'.format(self.name))
            ranking = self.ranking_loss(embeddings, labels)
            return ranking, {'loss': ranking}
        if epoch is None:
            raise CriterionError('{} is an LSD loss: it needs the epoch, which sets the distillation '
                                 'weight'.format(self.name))
        weight = self.distillation_weight(epoch)
        if teacher is None and weight != 0:
            raise CriterionError('{}: teacher_embeddings is None at epoch {}, where the distillation weight '
                                 'is {} (the teacher may be skipped only when it is 0)'.format(
                                     self.name, epoch, weight))
        ranking = self.ranking_loss(embeddings, labels)
        if teacher is None:
            kd = embeddings.new_zeros(())
            total = ranking
        elif weight == 0:
            # the total is the ranking loss itself, bit for bit; KD is reported for the log only
            with torch.no_grad():
                kd = self.distillation(embeddings, teacher, labels)
            total = ranking
        else:
            kd = self.distillation(embeddings, teacher, labels)
            total = ranking + weight * kd
        return total, {'loss': total, 'loss_rank': ranking, 'loss_kd': kd}

    def ranking_loss(self, embeddings, labels):
        """The ranking loss of the batch, paired with the cross-batch memory where there is one."""
        if self.memory is None:
            return self.ranking(embeddings, labels)
        return self.memory.loss(self.ranking, embeddings, labels)

    # ----- explicit delegation to the ranking module ----------------------------------------------------

    def to(self, *args, **kwargs):
        """Moves the ranking loss's parameters in place (the Parameter objects, hence the optimizer's
        groups, stay valid); returns the objective."""
        self.ranking.to(*args, **kwargs)
        return self

    def train(self, mode=True):
        self.ranking.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self):
        return self.ranking.parameters()

    def named_parameters(self):
        return self.ranking.named_parameters()

    def state_dict(self):
        """The ranking loss's state_dict: the reference's keys, what checkpoints store under 'criterion'."""
        return self.ranking.state_dict()

    def load_state_dict(self, state_dict, strict=True):
        """Loads a 'criterion' entry; keys written with a leading 'ranking.' load too."""
        state_dict = {key[len(RANKING_PREFIX):] if key.startswith(RANKING_PREFIX) else key: value
                      for key, value in state_dict.items()}
        return self.ranking.load_state_dict(state_dict, strict=strict)

    def __repr__(self):
        return 'Objective({}: {}{})'.format(self.name, type(self.ranking).__module__,
                                            ' + listwise distillation' if self.is_lsd else '')
