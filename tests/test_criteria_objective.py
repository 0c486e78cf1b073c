"""The one criterion interface the trainers call: build_objective → Objective(embeddings, labels, teacher,
epoch) → (total, named parts); its checkpoint keys; no attribute forwarding; float32 under autocast; the
miner checks derived from the miner registry."""
import pytest
import torch

import batch_mining
import criteria
from criteria_fixtures import LABELS, StubMiner, make_opt, random_batch, random_triplets

TRIPLETS = random_triplets(LABELS, 10, seed=4)


def objective(loss, *argv, n_classes=5, miner=None):
    opt = make_opt(*argv)
    del opt.n_classes                    # the number of classes is an argument, not read from the options
    miner = miner or (StubMiner('distance', TRIPLETS) if criteria.requires_miner(loss) else None)
    return criteria.build_objective(loss, opt, n_classes, miner)


def test_baseline_parts_are_the_loss_alone():
    x, labels = random_batch(0)
    built, groups = objective('margin')
    assert not built.is_lsd and not criteria.is_lsd(built) and built.name == 'margin'
    assert not any(built.needs_teacher(epoch) for epoch in range(5))
    total, parts = built(x, labels)
    assert list(parts) == ['loss'] and parts['loss'] is total and total.dim() == 0
    reference = criteria.select('margin', make_opt(), batchminer=StubMiner('distance', TRIPLETS))
    reference.load_state_dict(built.ranking.state_dict())
    assert torch.equal(total, reference(batch=x, labels=labels))
    assert [id(p) for group in groups for p in group['params']] == [id(built.ranking.beta)]
    with pytest.raises(criteria.CriterionError, match='margin is not an LSD loss') as error:
        built(x, labels, teacher_embeddings=x.detach())
    assert '\n' not in str(error.value)


def test_lsd_parts_are_the_three_train_log_values():
    x, labels = random_batch(1)
    teacher, _ = random_batch(2)
    built, groups = objective('triplet_lsd', '--n_epochs', '5', '--kd_alpha', '20', '--kd_tau', '0.5')
    assert built.is_lsd and criteria.is_lsd(built) and groups == []
    assert [built.needs_teacher(epoch) for epoch in range(5)] == [False, True, True, True, True]
    total, parts = built(x, labels, teacher_embeddings=teacher, epoch=2)
    assert list(parts) == ['loss', 'loss_rank', 'loss_kd'] and parts['loss'] is total
    assert all(value.dim() == 0 and value.device == x.device for value in parts.values())
    weight = 2 / 5 * 20 * 0.5 ** 2
    assert built.distillation_weight(2) == weight
    kd = criteria.listwise_kd(x, teacher, labels, 0.5, 1.0)
    torch.testing.assert_close(parts['loss_kd'], kd, rtol=0, atol=0)
    torch.testing.assert_close(total, parts['loss_rank'] + weight * kd, rtol=0, atol=0)


def test_select_gives_the_ranking_module_for_base_keys_and_the_objective_for_lsd_keys():
    opt = make_opt()
    base = criteria.select('proxynca', opt)
    lsd = criteria.select('proxynca_lsd', opt)
    assert isinstance(base, torch.nn.Module) and isinstance(lsd, criteria.Objective)
    assert isinstance(lsd.ranking, criteria.proxynca.Criterion) and lsd.ranking in list(lsd.children())


def test_n_classes_is_explicit_and_select_falls_back_to_the_options():
    built, _ = objective('proxynca', n_classes=7)
    assert built.ranking.proxies.shape == (7, 8)
    assert criteria.select('softmax', make_opt(n_classes=3)).class_map.shape == (3, 8)
    assert criteria.select('softmax', make_opt(n_classes=3), n_classes=4).class_map.shape == (4, 8)
    with pytest.raises(criteria.CriterionError, match='n_classes'):
        objective('arcface', n_classes=None)


@pytest.mark.parametrize('loss, keys', [('margin', ['beta']), ('proxynca', ['proxies']),
                                        ('softmax', ['class_map']), ('arcface', ['class_map']),
                                        ('softtriplet', ['intra_class_centroids']), ('triplet', [])])
@pytest.mark.parametrize('lsd', [False, True])
def test_checkpoint_keys_are_the_ranking_modules_and_old_entries_load(loss, keys, lsd):
    """The objective is a module: its keys are the ranking loss's (the reference's) under `ranking.`; entries
    written with the bare keys load too."""
    built, _ = objective(loss + ('_lsd' if lsd else ''))
    keys = ['ranking.' + key for key in keys]
    assert list(built.state_dict()) == keys
    assert [name for name, _ in built.named_parameters()] == keys
    assert [id(p) for p in built.parameters()] == [id(p) for p in built.ranking.parameters()]
    if not keys:
        return
    # a 'criterion' entry with the reference's bare keys, and one as the objective writes it
    for prefix in ('', 'ranking.'):
        entry = {prefix + key: torch.full_like(value, 0.25) for key, value in built.ranking.state_dict().items()}
        built.load_state_dict(entry)
        assert all(torch.equal(value, torch.full_like(value, 0.25)) for value in built.state_dict().values())
    with pytest.raises(RuntimeError):
        built.load_state_dict({'no_such_key': torch.zeros(1)})


def test_no_attribute_forwarding():
    built, _ = objective('triplet_lsd')
    miner = built.ranking.batchminer
    for name in ('margin', 'batchminer', 'beta', 'proxies'):
        with pytest.raises(AttributeError):
            getattr(built, name)
    built.batchminer = StubMiner('distance', [(0, 1, 4)])
    built.margin = 5.0
    assert built.ranking.batchminer is miner and built.ranking.margin == 0.2
    x, labels = random_batch(3)
    _, parts = built(x, labels, epoch=0)
    assert miner.calls == 1 and built.batchminer.calls == 0
    expected = criteria.select('triplet', make_opt(), batchminer=StubMiner('distance', TRIPLETS))(x, labels)
    assert torch.equal(parts['loss_rank'], expected)


def test_to_train_eval_delegate_to_the_ranking_module():
    built, groups = objective('proxynca_lsd')
    proxies = built.ranking.proxies
    assert built.to(torch.device('cpu'), torch.float64) is built and built.ranking.proxies is proxies
    assert proxies.dtype == torch.float64 and groups[0]['params'] is proxies
    assert built.eval() is built and not built.ranking.training
    assert built.train() is built and built.ranking.training


@pytest.mark.parametrize('loss', ['margin', 'margin_lsd', 'multisimilarity_lsd', 'proxynca_lsd'])
def test_half_precision_input_gives_the_float32_result_of_the_cast_input(loss):
    x32, labels = random_batch(5, dtype=torch.float32)
    teacher32, _ = random_batch(6, dtype=torch.float32)
    x16 = x32.detach().to(torch.bfloat16).requires_grad_()
    teacher16 = teacher32.detach().to(torch.bfloat16)
    built, _ = objective(loss, '--n_epochs', '4')
    teacher_kwargs = {'teacher_embeddings': teacher16, 'epoch': 2} if built.is_lsd else {}
    with torch.autocast('cpu', dtype=torch.bfloat16):
        total, parts = built(x16, labels, **teacher_kwargs)
    cast = x16.detach().float().requires_grad_()
    cast_kwargs = {'teacher_embeddings': teacher16.float(), 'epoch': 2} if built.is_lsd else {}
    expected, expected_parts = built(cast, labels, **cast_kwargs)
    assert all(value.dtype == torch.float32 for value in parts.values())
    assert all(torch.equal(parts[key], expected_parts[key]) for key in parts)
    grad, = torch.autograd.grad(total, x16)
    expected_grad, = torch.autograd.grad(expected, cast)
    assert grad.dtype == torch.bfloat16 and torch.equal(grad, expected_grad.to(torch.bfloat16))
    # float64 stays float64 (the tests' reference precision)
    assert built(x32.detach().double(), labels, **cast_kwargs)[0].dtype == torch.float64


# ----- which miners a loss accepts ---------------------------------------------------------------------

TRIPLET_FORM = ['random', 'semihard', 'softhard', 'distance', 'rho_distance', 'parametric', 'random_distance',
                'intra_random']


@pytest.mark.parametrize('loss', ['triplet', 'triplet_lsd', 'margin', 'contrastive', 'snr', 'quadruplet'])
def test_triplet_losses_accept_every_triplet_form_registry_key(loss):
    assert criteria.requires_miner(loss)
    assert criteria.base_name(loss) in criteria.BASE_LOSS_NAMES
    for key in TRIPLET_FORM:
        criteria.check_miner(loss, key)
    for key in ('npair', 'lifted'):
        with pytest.raises(criteria.CriterionError) as error:
            criteria.check_miner(loss, key)
        assert str(error.value) == '{}-mining not allowed for {}-loss! Allowed: {}'.format(
            key, loss, ', '.join(TRIPLET_FORM))


def test_accepted_miners_follow_the_miner_registry():
    registry = list(batch_mining.BATCHMINING_METHODS)
    assert criteria.triplet.ALLOWED_MINING_OPS == [key for key in registry if key not in ('npair', 'lifted')]
    assert criteria.ap_loss.ALLOWED_MINING_OPS == registry
    for key in registry:
        criteria.check_miner('ap_loss_lsd', key)
        criteria.check_miner('multisimilarity', key)       # takes no miner: nothing to refuse
    for loss, own in (('npair', 'npair'), ('angular', 'npair'), ('lifted', 'lifted')):
        criteria.check_miner(loss, own)
        for key in registry:
            if key != own:
                with pytest.raises(criteria.CriterionError, match='^{}-mining not allowed for {}-loss!'.format(
                        key, loss)):
                    criteria.check_miner(loss, key)


def test_real_random_distance_and_intra_random_miners_build_a_triplet_loss():
    opt = make_opt('--loss', 'triplet')
    for key in ('random_distance', 'intra_random'):
        criteria.check_miner('triplet', key)
        miner = batch_mining.select(key, opt)
        built, _ = criteria.build_objective('triplet', opt, 5, miner)
        x, labels = random_batch(7)
        total, _ = built(x, labels)
        assert torch.isfinite(total)


@pytest.mark.parametrize('loss, needs', [('triplet', True), ('ap_loss_lsd', True), ('lifted', True),
                                         ('proxynca', False), ('histogram_lsd', False)])
def test_requires_miner(loss, needs):
    assert criteria.requires_miner(loss) is needs


@pytest.mark.parametrize('call', [criteria.requires_miner, lambda loss: criteria.check_miner(loss, 'distance')])
def test_unknown_keys_get_the_registry_message(call):
    with pytest.raises(NotImplementedError, match='^Loss foo not implemented!$'):
        call('foo')
