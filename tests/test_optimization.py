"""The optimizer groups and the learning-rate schedule (training/optimization.py): AdamW's groups against timm's
own decision and a rule written out here, the reference optimizers' groups as the reference builds them, the
per-update cosine schedule against timm's CosineLRScheduler stepped as timm's train.py steps it, and a resumed
schedule continuing the same sequence."""
import io

import pytest
import timm
import timm.optim
import torch
from timm.scheduler import CosineLRScheduler

import architectures
import criteria
import parameters
from training import engine, optimization
from runtime.precision import Precision

N_CLASSES = 3


def options(*argv):
    opt = parameters.read_arguments(['--arch', 'timm/test_vit', '--input_size', '32', '--not_pretrained',
                                     '--embed_dim', '8', *argv])
    opt.n_classes = N_CLASSES
    return opt


def vit_with_proxies(*argv):
    opt = options('--loss', 'proxyanchor', *argv)
    torch.manual_seed(0)
    model = architectures.select(opt.arch, opt)
    objective, _ = criteria.build_objective('proxyanchor', opt, N_CLASSES)
    return opt, model, objective


def decayed(groups):
    return {id(p) for group in groups if group['weight_decay'] > 0 for p in group['params']}


@pytest.mark.parametrize('fc_lr', ['-1', '0.01'])
def test_adamw_groups_decay_what_timm_decays_and_never_biases_norms_or_proxies(fc_lr):
    opt, model, objective = vit_with_proxies('--optim', 'adamw', '--decay', '0.05', '--fc_lr', fc_lr)
    groups = optimization.optimizer_groups(model, objective, opt)
    optimizer = optimization.build_optimizer(groups, opt)
    assert isinstance(optimizer, torch.optim.AdamW)

    # the network: exactly what timm's own AdamW decays for the timm model inside the backbone
    timm_optimizer = timm.optim.create_optimizer_v2(model.model, 'adamw', lr=opt.lr, weight_decay=0.05)
    timm_decayed = {id(p) for group in timm_optimizer.param_groups if group['weight_decay'] > 0
                    for p in group['params']}
    assert decayed(groups) & {id(p) for p in model.model.parameters()} == timm_decayed

    # the rule written out: ndim >= 2, not a bias, not a token or position embedding, not a proxy
    names = dict(model.named_parameters())
    names.update({'objective.' + name: p for name, p in objective.named_parameters()})
    expected = {id(p) for name, p in names.items() if p.ndim >= 2 and not name.endswith('.bias')
                and name.split('.')[-1] not in ('pos_embed', 'cls_token', 'reg_token', 'dist_token', 'proxies')}
    assert decayed(groups) == expected
    assert id(objective.ranking.proxies) not in decayed(groups)
    assert all(group['weight_decay'] in (0.0, 0.05) for group in groups)

    # learning rates as the reference groups give them: the proxies at --lr × 100, --fc_lr for the head
    rate = {id(p): group['lr'] for group in groups for p in group['params']}
    assert rate[id(objective.ranking.proxies)] == pytest.approx(opt.lr * 100)
    head = model.model.last_linear if hasattr(model.model, 'last_linear') else None
    if head is not None:
        assert all(rate[id(p)] == (0.01 if fc_lr == '0.01' else opt.lr) for p in head.parameters())
    counted = [id(p) for group in groups for p in group['params']]
    assert len(counted) == len(set(counted)) == len(list(model.parameters())) + 1


def test_adamw_without_decay_decays_nothing():
    opt, model, objective = vit_with_proxies('--optim', 'adamw', '--decay', '0')
    assert decayed(optimization.optimizer_groups(model, objective, opt)) == set()


@pytest.mark.parametrize('optim', ['adam', 'sgd'])
def test_the_reference_optimizers_keep_the_reference_groups(optim):
    """One network group with --decay (L2), then the loss's groups: no split of biases or norms."""
    opt = options('--loss', 'margin', '--optim', optim)
    model = architectures.select(opt.arch, opt)
    from criteria_fixtures import StubMiner
    objective, _ = criteria.build_objective('margin', opt, N_CLASSES, StubMiner('distance', []))
    groups = optimization.optimizer_groups(model, objective, opt)
    assert len(groups) == 2 and groups[0]['weight_decay'] == opt.decay
    assert groups[0]['params'] == [p for p in model.parameters() if p.requires_grad]
    assert groups[1] == {'params': [objective.ranking.beta], 'lr': opt.loss_margin_beta_lr}


# ----- the per-update cosine schedule ---------------------------------------------------------------------

EPOCHS, UPDATES, WARMUP = 4, 5, 1


class RateRecorder(torch.nn.Module):
    """An objective that records the learning rates in force when each step's loss is computed."""
    part_names = ('loss',)

    def __init__(self, optimizer_box):
        super().__init__()
        self.optimizer_box, self.rates = optimizer_box, []

    def needs_teacher(self, epoch):
        return False

    def forward(self, embeddings, labels, teacher_embeddings=None, epoch=0):
        self.rates.append([group['lr'] for group in self.optimizer_box[0].param_groups])
        loss = embeddings.square().mean()
        return loss, {'loss': loss}


def loader():
    generator = torch.Generator().manual_seed(0)
    return [(torch.zeros(4, dtype=torch.int64), torch.randn(4, 3, generator=generator), torch.arange(4))
            for _ in range(UPDATES)]


def setup_run():
    opt = parameters.read_arguments(['--optim', 'adamw', '--scheduler', 'cosine', '--warmup_epochs', str(WARMUP),
                                     '--n_epochs', str(EPOCHS), '--lr', '0.1'])
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    groups = [{'params': [model.weight], 'lr': 0.1, 'weight_decay': 0.01}, {'params': [model.bias], 'lr': 1.0,
                                                                            'weight_decay': 0.0}]
    optimizer = optimization.build_optimizer(groups, opt)
    scheduler = optimization.build_scheduler(optimizer, opt, updates_per_epoch=UPDATES)
    return opt, model, optimizer, scheduler


def train_epochs(model, optimizer, scheduler, epochs, data):
    box = [optimizer]
    recorder = RateRecorder(box)
    for epoch in epochs:
        engine.train_one_epoch(model, recorder, optimizer, data, epoch, device=torch.device('cpu'),
                               precision=Precision('off', 'off', torch.device('cpu')), normalise=lambda x: x,
                               after_step=optimization.update_hook(scheduler, epoch))
        scheduler.step()   # the loop's epoch-end call
    return recorder.rates


def timm_sequence(groups_lr):
    """timm's CosineLRScheduler on its own optimizer, stepped as timm's train.py: the rate of each update, then
    num_updates += 1 and step_update(num_updates)."""
    optimizer = torch.optim.AdamW([{'params': [torch.nn.Parameter(torch.zeros(1))], 'lr': lr} for lr in groups_lr])
    schedule = CosineLRScheduler(optimizer, t_initial=EPOCHS * UPDATES, warmup_t=WARMUP * UPDATES,
                                 warmup_lr_init=1e-5, lr_min=0.0, t_in_epochs=False)
    rates, num_updates = [], 0
    for epoch in range(EPOCHS):
        for _ in range(UPDATES):
            rates.append([group['lr'] for group in optimizer.param_groups])
            num_updates += 1
            schedule.step_update(num_updates=num_updates)
        schedule.step(epoch + 1)
    return rates


def test_cosine_steps_every_update_as_timms_scheduler():
    _, model, optimizer, scheduler = setup_run()
    rates = train_epochs(model, optimizer, scheduler, range(EPOCHS), loader())
    expected = timm_sequence([0.1, 1.0])
    assert len(rates) == EPOCHS * UPDATES and rates == expected
    assert rates[0] == [1e-5, 1e-5]                                   # timm's warm-up starts at its warmup_lr
    assert len({tuple(r) for r in rates}) == len(rates)               # a new rate for every update
    assert rates[WARMUP * UPDATES][1] < 1.0 and rates[-1][1] < 0.02   # cosine after the warm-up, down to ~0


def test_a_resumed_schedule_continues_the_same_sequence():
    data = loader()
    _, model, optimizer, scheduler = setup_run()
    straight = train_epochs(model, optimizer, scheduler, range(EPOCHS), data)

    _, model, optimizer, scheduler = setup_run()
    first = train_epochs(model, optimizer, scheduler, range(2), data)
    buffer = io.BytesIO()
    torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                'scheduler': scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    _, resumed_model, resumed_optimizer, resumed_scheduler = setup_run()   # a fresh process's objects
    resumed_model.load_state_dict(state['model'])
    resumed_optimizer.load_state_dict(state['optimizer'])   # as TrainingRun.restore: optimizer, then schedule
    resumed_scheduler.load_state_dict(state['scheduler'])
    rest = train_epochs(resumed_model, resumed_optimizer, resumed_scheduler, range(2, EPOCHS), data)
    assert first + rest == straight
    _, model, optimizer, scheduler = setup_run()
    train_epochs(model, optimizer, scheduler, range(EPOCHS), data)
    assert torch.equal(resumed_model.weight, model.weight)


def test_a_per_epoch_schedule_state_is_refused_by_the_per_update_schedule():
    _, _, optimizer, scheduler = setup_run()
    with pytest.raises(ValueError, match='--scheduler cosine'):
        scheduler.load_state_dict({'base_lrs': [0.1], 'last_epoch': 2})


def test_step_and_none_schedules_have_no_update_hook():
    _, _, optimizer, _ = setup_run()
    step = optimization.build_scheduler(optimizer, parameters.read_arguments(['--tau', '2']))
    assert optimization.update_hook(step, 0) is None and optimization.update_hook(None, 0) is None
