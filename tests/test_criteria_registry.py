"""criteria.select: keys, messages, miner checks, optimiser groups, parameters."""
import math

import pytest
import torch

import criteria
from criteria_fixtures import StubMiner, make_opt, random_batch, ranking_of

BASE = ['triplet', 'margin', 'proxynca', 'npair', 'angular', 'contrastive', 'lifted', 'snr', 'multisimilarity',
        'histogram', 'softmax', 'softtriplet', 'arcface', 'quadruplet', 'ap_loss', 'proxyanchor']
TRIPLET_FORM = ['random', 'semihard', 'softhard', 'distance', 'rho_distance', 'parametric', 'random_distance',
                'intra_random']
ALL_MINERS = ['random', 'semihard', 'softhard', 'distance', 'rho_distance', 'npair', 'parametric', 'lifted',
              'random_distance', 'intra_random']
NO_MINER = ['proxynca', 'multisimilarity', 'histogram', 'softmax', 'softtriplet', 'arcface', 'proxyanchor']


def test_registry_has_the_33_keys():
    assert criteria.BASE_LOSS_NAMES == BASE
    assert sorted(criteria.LOSS_NAMES) == sorted(BASE + ['adversarial_separation'] + [b + '_lsd' for b in BASE])
    assert len(criteria.LOSS_NAMES) == 33


@pytest.mark.parametrize('name', ['foo', 'triplet_lsd_cos', 'triplet_lsd_hard', 'adversarial_separation_lsd'])
def test_unknown_key(name):
    with pytest.raises(NotImplementedError, match='^Loss {} not implemented!'.format(name)):
        criteria.select(name, make_opt())


def test_adversarial_separation_refuses_with_one_line():
    with pytest.raises(NotImplementedError, match='DiVA') as error:
        criteria.select('adversarial_separation', make_opt())
    assert '\n' not in str(error.value)


def allowed(loss):
    if loss in ('npair', 'angular'):
        return ['npair']
    if loss == 'lifted':
        return ['lifted']
    if loss == 'ap_loss':
        return ALL_MINERS
    return None if loss in NO_MINER else TRIPLET_FORM


@pytest.mark.parametrize('loss', BASE + [b + '_lsd' for b in BASE])
def test_miner_checks(loss):
    base = loss[:-4] if loss.endswith('_lsd') else loss
    names = allowed(base)
    module = criteria.BASE_LOSSES[base]
    assert module.ALLOWED_MINING_OPS == names and module.REQUIRES_BATCHMINER == (names is not None)
    if names is None:
        assert criteria.select(loss, make_opt(), batchminer=None) is not None
        return
    with pytest.raises(criteria.MiningMismatchError) as error:
        criteria.select(loss, make_opt())
    assert str(error.value) == 'Loss {} requires one of the following batch mining methods: {}'.format(loss, names)
    for name in ALL_MINERS:
        miner = StubMiner(name, [])
        if name in names:
            assert ranking_of(criteria.select(loss, make_opt(), batchminer=miner)).batchminer is miner
        else:
            with pytest.raises(criteria.MiningMismatchError) as error:
                criteria.select(loss, make_opt(), batchminer=miner)
            assert str(error.value) == '{}-mining not allowed for {}-loss!'.format(name, loss)


def test_miner_check_reads_the_miner_name_not_the_key():
    # random_distance reports `distance`, intra_random reports `random`, as in the reference
    for name in ('distance', 'random'):
        assert criteria.select('snr', make_opt(), batchminer=StubMiner(name, [])) is not None
    assert criteria.select('snr', make_opt(), batchminer=StubMiner('distance', [])).reg_lambda == 0


GROUPS = {  # loss: (parameter attribute, shape for n_classes 5 / embed_dim 8, lr for --lr 1e-5)
    'margin': ('beta', (5,), 5e-4),
    'proxynca': ('proxies', (5, 8), 1e-5 * 50),
    'softmax': ('class_map', (5, 8), 1e-5),
    'softtriplet': ('intra_class_centroids', (8, 10), 1e-5 * 1),
    'arcface': ('class_map', (5, 8), 5e-4),
    'proxyanchor': ('proxies', (5, 8), 1e-5 * 100),
}


@pytest.mark.parametrize('loss', BASE + [b + '_lsd' for b in BASE])
def test_optimiser_groups(loss):
    base = loss[:-4] if loss.endswith('_lsd') else loss
    to_optim = [{'params': [torch.nn.Parameter(torch.ones(1))], 'lr': 1.0}]
    before = list(to_optim)
    miner = StubMiner((allowed(base) or ['distance'])[0], [])
    criterion, returned = criteria.select(loss, make_opt(), to_optim, batchminer=miner)
    assert returned is to_optim and to_optim[0] is before[0]
    if base not in GROUPS:
        assert len(to_optim) == 1 and not list(criterion.parameters())
        return
    attribute, shape, lr = GROUPS[base]
    assert len(to_optim) == 2
    group = to_optim[1]
    params = group['params'] if isinstance(group['params'], list) else [group['params']]
    assert [id(p) for p in params] == [id(getattr(ranking_of(criterion), attribute))]
    assert getattr(ranking_of(criterion), attribute).shape == shape
    assert group['lr'] == pytest.approx(lr, rel=1e-12)
    # Proxy-Anchor's proxies decay with the network's --decay, as its authors'; no other loss names a decay
    own_decay = group.get('weight_decay')
    assert own_decay == (make_opt().decay if base == 'proxyanchor' else None)
    optimizer = torch.optim.Adam(to_optim, weight_decay=0.1)
    assert optimizer.param_groups[1]['weight_decay'] == (0.1 if own_decay is None else own_decay)
    assert [g['lr'] for g in optimizer.param_groups] == [1.0, group['lr']]


def test_without_to_optim_returns_the_criterion_alone():
    criterion = criteria.select('softmax', make_opt())
    assert isinstance(criterion, torch.nn.Module)


def test_margin_constant_beta_appends_an_empty_group_that_adam_accepts():
    to_optim = [{'params': [torch.nn.Parameter(torch.ones(1))], 'lr': 1.0}]
    criteria.select('margin', make_opt('--loss_margin_beta_constant'), to_optim, batchminer=StubMiner('distance', []))
    assert len(to_optim) == 2 and list(to_optim[1]['params']) == [] and to_optim[1]['lr'] == 5e-4
    assert len(torch.optim.Adam(to_optim).param_groups) == 2


def test_parameter_initialisation():
    torch.manual_seed(0)
    opt = make_opt(n_classes=400, embed_dim=128)
    proxies = criteria.select('proxynca', opt).proxies.detach()
    assert proxies.std().item() == pytest.approx(1 / 8, rel=0.02)
    for loss in ('softmax', 'arcface'):
        class_map = criteria.select(loss, opt).class_map.detach()
        bound = 1 / math.sqrt(128)
        assert class_map.abs().max() <= bound and class_map.abs().max() > 0.99 * bound
    centroids = criteria.select('softtriplet', opt).intra_class_centroids.detach()
    bound = 1 / math.sqrt(400 * 2)
    assert centroids.shape == (128, 800) and centroids.abs().max() <= bound
    assert centroids.abs().max() > 0.99 * bound
    beta = criteria.select('margin', opt, batchminer=StubMiner('distance', [])).beta
    assert torch.equal(beta.detach(), torch.full((400,), 1.2))


def test_to_device_keeps_parameter_objects():
    groups = []
    criterion, _ = criteria.select('proxynca_lsd', make_opt(), groups)
    proxies = criterion.ranking.proxies
    criterion.to(torch.device('cpu'), torch.float64)
    assert criterion.ranking.proxies is proxies and groups[0]['params'] is proxies and proxies.dtype == torch.float64


def test_base_name_and_is_lsd():
    assert criteria.base_name('triplet_lsd') == 'triplet' and criteria.base_name('ap_loss') == 'ap_loss'
    assert criteria.is_lsd('ap_loss_lsd') and not criteria.is_lsd('ap_loss') and not criteria.is_lsd('foo_lsd')


def test_base_losses_ignore_extra_keywords():
    x, labels = random_batch(0)
    criterion = criteria.select('multisimilarity', make_opt())
    plain = criterion(batch=x, labels=labels)
    extra = criterion(batch=x, labels=labels, teacher_batch=None, epoch=3, n_epochs=10, batch_features=None,
                      f_embed=None)
    assert torch.equal(plain, extra)


def test_label_count_mismatch_is_a_one_line_error():
    x, labels = random_batch(1)
    with pytest.raises(criteria.CriterionError, match='11 labels for a batch of 12'):
        criteria.select('histogram', make_opt())(batch=x, labels=labels[:-1])
