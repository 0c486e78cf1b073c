"""`<loss>_lsd`: any ranking criterion composed with the listwise self-distillation term (spec criteria.md
C.4-C.5). One wrapper replaces the seed's seven pasted copies (E-28)."""
import torch

from criteria.common import CriterionError
from criteria.listwise_distillation import listwise_kd

_NOT_GIVEN = object()


class Criterion(torch.nn.Module):
    """total = ranking + (e / N)·α·τ²·KD, returned as (total, ranking, KD).

    The ranking criterion is the sub-module `ranking`; its parameters are the only ones, its state_dict
    keys carry no prefix (so reference checkpoints load), and any attribute this wrapper does not define
    is read from and assigned to it (`proxies`, `beta`, `batchminer`, `optim_dict_list`, ...)."""
    IS_LSD = True

    def __init__(self, ranking, opt, loss_key):
        super().__init__()
        self.loss_key = loss_key
        self.kd_tau = opt.kd_tau
        self.kd_alpha = opt.kd_alpha
        # E-26: a separate kd_beta, treated as 1.0 under --f_distillation_standard (C.1)
        self.kd_beta = 1.0 if opt.f_distillation_standard else opt.kd_beta
        # read once here; the n_epochs keyword of forward is ignored, as in the seed (E-28)
        self.n_epochs = opt.n_epochs
        self.ranking = ranking
        self.register_state_dict_post_hook(_drop_ranking_prefix)
        self.register_load_state_dict_pre_hook(_add_ranking_prefix)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == 'ranking':
                raise
            return getattr(self.ranking, name)

    def __setattr__(self, name, value):
        ranking = self.__dict__.get('_modules', {}).get('ranking')
        if ranking is not None and name not in self.__dict__ and hasattr(ranking, name):
            setattr(ranking, name, value)
        else:
            super().__setattr__(name, value)

    def distillation_weight(self, epoch):
        """w(e) = (e / N)·α·τ²: 0 in epoch 0, (N−1)/N·α·τ² in the last epoch (C.4)."""
        return epoch / self.n_epochs * self.kd_alpha * self.kd_tau ** 2

    def forward(self, batch, teacher_batch=_NOT_GIVEN, labels=None, epoch=_NOT_GIVEN, **kwargs):
        if teacher_batch is _NOT_GIVEN or epoch is _NOT_GIVEN or epoch is None or labels is None:
            raise CriterionError('{} is an LSD loss: it needs batch, teacher_batch, labels and epoch; '
                                 'train it with the LSD trainer (main.py)'.format(self.loss_key))
        ranking = self.ranking(batch, labels, **kwargs)
        weight = self.distillation_weight(epoch)
        if teacher_batch is None:
            if weight != 0:
                raise CriterionError('{}: teacher_batch is None at epoch {}, where the distillation '
                                     'weight is {} (the teacher may be skipped only when it is 0)'.format(
                                         self.loss_key, epoch, weight))
            return ranking, ranking, batch.new_zeros(())
        if weight == 0:
            # C.4: total is ranking itself, bit for bit; KD is still reported for logging
            with torch.no_grad():
                return ranking, ranking, listwise_kd(batch, teacher_batch, labels, self.kd_tau, self.kd_beta)
        kd = listwise_kd(batch, teacher_batch, labels, self.kd_tau, self.kd_beta)
        return ranking + weight * kd, ranking, kd


def _drop_ranking_prefix(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + 'ranking.')]:
        state_dict[prefix + key[len(prefix) + len('ranking.'):]] = state_dict.pop(key)


def _add_ranking_prefix(module, state_dict, prefix, local_metadata, strict, missing_keys,
                        unexpected_keys, error_msgs):
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + 'ranking.')]:
        state_dict[prefix + 'ranking.' + key[len(prefix):]] = state_dict.pop(key)
