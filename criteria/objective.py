"""What the training loop optimises: a ranking loss, optionally composed with listwise self-distillation.

    total = ranking + w(e)·KD,   w(e) = (e / N)·α·τ²   (the LSD paper's objective; w = 0 without LSD)

`Objective` is a module whose children are the ranking loss (`ranking`), the distillation term
(`distillation`, LSD only) and the cross-batch memory (`memory`, --xbm_size only): `.to`, `.train`,
`.parameters()` and `state_dict()` are torch's. Its state_dict, what resume files store under 'criterion',
holds `ranking.<the loss's keys>` (`ranking.beta`, `ranking.proxies`, ...) and with a memory
`memory.embeddings`, `memory.labels`, `memory._extra_state`. Entries written before, with the ranking loss's
bare keys (`beta`, `proxies`) and the memory in a separate entry, load through `legacy_state`.
"""
import contextlib

import torch

from criteria.common import CriterionError
from criteria.cross_batch_memory import CrossBatchMemory

RANKING_PREFIX = 'ranking.'
MEMORY_PREFIX = 'memory.'


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


def parameter_groups(ranking, weight_decay=0.0):
    """The optimizer groups of a ranking loss's own parameters, as the loss declares them: its
    `optimizer_groups(weight_decay)` when it has one (`weight_decay` is the network's --decay, for a loss that
    decays its parameters as its authors do), else its `optim_dict_list`, else one group of all its parameters at
    its `lr`; none for a loss without learnable parameters. Groups without a weight_decay of their own take the
    optimizer's default (0 in both trainers), as in the reference."""
    if not type(ranking).REQUIRES_OPTIM:
        return []
    if hasattr(ranking, 'optimizer_groups'):
        return list(ranking.optimizer_groups(weight_decay))
    if getattr(ranking, 'optim_dict_list', None) is not None:
        return list(ranking.optim_dict_list)
    return [{'params': list(ranking.parameters()), 'lr': ranking.lr}]


class Objective(torch.nn.Module):
    """`objective(embeddings, labels, teacher_embeddings=None, epoch=0) -> (total, parts)`.

    `parts` holds 0-d tensors named by the Train log keys: `{'loss'}` for a baseline, `{'loss', 'loss_rank',
    'loss_kd'}` for LSD. Where w(e) = 0 the total is the ranking tensor itself and KD is still reported,
    computed without gradient; the teacher may then be None (loss_kd is 0)."""

    def __init__(self, name, ranking, distillation=None, schedule=None, memory=None):
        if (distillation is None) != (schedule is None):
            raise CriterionError('{}: an LSD objective needs both the distillation term and its weight '
                                 'schedule'.format(name))
        super().__init__()
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

    def forward(self, embeddings, labels, teacher_embeddings=None, epoch=0):
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

    # ----- the loss's own training behaviour, asked by the trainer ------------------------------------------

    def optimizer_groups(self, weight_decay=0.0):
        """The optimizer groups of the ranking loss's parameters (`parameter_groups`)."""
        return parameter_groups(self.ranking, weight_decay)

    def no_weight_decay(self):
        """Names of parameters the decoupled-decay recipe (timm's convention) leaves undecayed."""
        names = getattr(self.ranking, 'no_weight_decay', None)
        return {RANKING_PREFIX + name for name in names()} if names is not None else set()

    @property
    def warmup_epochs(self):
        """Epochs during which only the embedding layer and the loss's parameters train (0: none)."""
        return int(getattr(self.ranking, 'warmup_epochs', 0))

    @property
    def warmup_flag(self):
        """The flag that sets `warmup_epochs`, for error messages."""
        return getattr(self.ranking, 'WARMUP_FLAG', None)

    # ----- state ----------------------------------------------------------------------------------------

    def load_state_dict(self, state_dict, strict=True):
        """Loads a 'criterion' entry; the ranking loss's bare keys (entries written before the objective was a
        module) load too."""
        if state_dict and not any(key.startswith((RANKING_PREFIX, MEMORY_PREFIX)) for key in state_dict):
            state_dict = {RANKING_PREFIX + key: value for key, value in state_dict.items()}
        if self.memory is not None and MEMORY_PREFIX + '_extra_state' not in state_dict:
            raise CriterionError('cross-batch memory: the resume state holds no memory (saved by a run '
                                 'without --xbm_size)')
        return super().load_state_dict(state_dict, strict=strict)

    @staticmethod
    def legacy_state(criterion_state, memory_state=None):
        """A resume file's 'criterion' entry with bare ranking keys and its separate 'memory' entry as one
        state_dict of the objective."""
        state = {key if key.startswith(RANKING_PREFIX) else RANKING_PREFIX + key: value
                 for key, value in criterion_state.items()}
        state.update({MEMORY_PREFIX + key: value for key, value in CrossBatchMemory.legacy_state(memory_state).items()})
        return state

    def __repr__(self):
        return 'Objective({}: {}{})'.format(self.name, type(self.ranking).__module__,
                                            ' + listwise distillation' if self.is_lsd else '')
