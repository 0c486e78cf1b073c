"""The storage protocol and the greedy, D², distance-histogram and FID samplers."""
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

import datasampler
from datasampler import disthist_batchmatch_sampler, storage
from datasampler.d2_coreset_sampler import d2_coreset
from datasampler.greedy_coreset_sampler import greedy_coreset
from test_datasampler import P_MIN, make_index, make_opt

STORAGE_SAMPLERS = ['greedy_coreset', 'd2_coreset', 'disthist_batchmatch', 'fid_batchmatch']
SIZES = [6, 2, 9, 4, 7, 3, 5, 8, 6, 10]  # 60 images


class TinyNet(torch.nn.Module):
    """Embeds a 3×2×2 'image' linearly; returns (embedding, features) like the backbones, or the embedding alone."""

    def __init__(self, dim=8, as_tuple=True):
        super().__init__()
        self.linear, self.as_tuple = torch.nn.Linear(12, dim), as_tuple

    def forward(self, images):
        embedding = torch.nn.functional.normalize(self.linear(images.flatten(1)), dim=1)
        return (embedding, images) if self.as_tuple else embedding


class TinyDataset(torch.utils.data.Dataset):
    """Items (label, image, global index) as the datasets return them."""

    def __init__(self, image_list):
        self.labels = [label for _, label in image_list]
        self.images = torch.randn(len(image_list), 3, 2, 2, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.labels[index], self.images[index], index


@pytest.fixture
def index():
    return make_index(SIZES)


def build(name, index, rows=None, **flags):
    """A storage sampler whose storage is `rows` (default: random unit vectors in 8-D)."""
    values = dict(bs=8, samples_per_class=2, data_batchmatch_bigbs=24)
    values.update(flags)
    sampler = datasampler.select(name, make_opt(**values), *index)
    sampler.storage = torch.nn.functional.normalize(torch.randn(len(index[1]), 8), dim=1) if rows is None else rows
    return sampler


def labels_of(index):
    return np.array([label for _, label in index[1]])


# ----------------------------------------------------------------------------------------------- storage protocol

@pytest.mark.parametrize('as_tuple', [True, False])
def test_create_storage_embeds_the_evaluation_loader_in_eval_mode(index, as_tuple):
    net = TinyNet(as_tuple=as_tuple)
    dataset = TinyDataset(index[1])
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=False)
    sampler = datasampler.select('greedy_coreset', make_opt(bs=8, data_batchmatch_bigbs=24), *index)
    net.train()
    sampler.create_storage(loader, net, 'cpu')
    assert not net.training
    with torch.no_grad():
        expected = torch.nn.functional.normalize(net.linear(dataset.images.flatten(1)), dim=1)
    assert sampler.storage.shape == (60, 8) and sampler.storage.device.type == 'cpu'
    assert not sampler.storage.requires_grad
    torch.testing.assert_close(sampler.storage, expected)


def test_create_storage_rejects_a_loader_that_misses_images(index):
    dataset = torch.utils.data.Subset(TinyDataset(index[1]), range(50))
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    sampler = datasampler.select('d2_coreset', make_opt(bs=8, data_batchmatch_bigbs=24), *index)
    with pytest.raises(datasampler.SamplerConfigError, match='cover the 60 training images'):
        sampler.create_storage(loader, TinyNet(), 'cpu')


@pytest.mark.parametrize('name', STORAGE_SAMPLERS)
def test_protocol_order_is_enforced(index, name):
    sampler = datasampler.select(name, make_opt(bs=8, data_batchmatch_bigbs=24), *index)
    with pytest.raises(RuntimeError, match='create_storage must run before precompute_indices'):
        sampler.precompute_indices()
    sampler.storage = torch.randn(60, 8)
    with pytest.raises(RuntimeError, match='precompute_indices must run before iterating'):
        list(sampler)


def test_replace_storage_entries_writes_rows(index):
    sampler = build('fid_batchmatch', index)
    before = sampler.storage.clone()
    new = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    sampler.replace_storage_entries(new, torch.tensor([5, 0, 59]))
    torch.testing.assert_close(sampler.storage[[5, 0, 59]], new.detach().float())
    untouched = torch.ones(60, dtype=torch.bool)
    untouched[[5, 0, 59]] = False
    assert torch.equal(sampler.storage[untouched], before[untouched])


@pytest.mark.parametrize('momentum', [-1, 0.9])
def test_full_storage_update(index, momentum):
    """Intended refresh of --data_idx_full_prec (the reference crashes): storage ← new, or with momentum m:
    delta ← m·delta + (1−m)(new − old), storage ← new + lr·delta."""
    net, loader = TinyNet(), torch.utils.data.DataLoader(TinyDataset(index[1]), batch_size=8)
    sampler = datasampler.select('disthist_batchmatch', make_opt(bs=8, data_mb_mom=momentum, data_mb_lr=0.5), *index)
    sampler.create_storage(loader, net, 'cpu')
    old = sampler.storage.clone()
    with torch.no_grad():
        net.linear.weight.add_(0.3)
    sampler.full_storage_update(loader, net, 'cpu')
    with torch.no_grad():
        new = net(TinyDataset(index[1]).images)[0]
    expected = new + 0.5 * 0.1 * (new - old) if momentum > 0 else new
    torch.testing.assert_close(sampler.storage, expected)


@pytest.mark.parametrize('name', STORAGE_SAMPLERS)
@pytest.mark.parametrize('spc', [1, 2, 4])
def test_epoch_has_len_batches_of_bs_indices(index, name, spc):
    sampler = build(name, index, samples_per_class=spc)
    sampler.precompute_indices()
    batches = list(sampler)
    assert len(sampler) == len(batches) == 60 // 8
    assert all(len(batch) == 8 and all(type(i) is int and 0 <= i < 60 for i in batch) for batch in batches)
    assert batches == list(sampler)  # iterating again yields the same precomputed epoch


@pytest.mark.parametrize('name', STORAGE_SAMPLERS)
def test_same_seed_same_epoch_and_chunking_keeps_structure(index, name, monkeypatch):
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        sampler = build(name, index, data_sampler_lowproj_dim=4)
        sampler.precompute_indices()
        runs.append(sampler.epoch_indices)
    assert runs[0] == runs[1]
    monkeypatch.setattr(storage, 'CHUNK_BYTES', 1)  # one call per chunk
    sampler.precompute_indices()
    assert len(sampler.epoch_indices) == 7 and {len(batch) for batch in sampler.epoch_indices} == {8}


def test_random_projection_is_fresh_uniform_per_call(index):
    """Projecting the identity returns the map itself: D × p entries i.i.d. U(−1/√D, 1/√D), new for every call."""
    sampler = build('greedy_coreset', index, data_sampler_lowproj_dim=5)
    dim = 400
    weights = sampler._project(torch.eye(dim).expand(3, dim, dim))
    assert weights.shape == (3, dim, 5)
    bound = dim ** -0.5
    assert weights.abs().max() <= bound and not torch.equal(weights[0], weights[1])
    assert scipy.stats.kstest(weights.flatten().numpy(), 'uniform', args=(-bound, 2 * bound)).pvalue > P_MIN
    assert torch.equal(build('greedy_coreset', index)._project(torch.eye(4)[None]), torch.eye(4)[None])


# ----------------------------------------------------------------------------------------------- greedy coreset

def brute_force_farthest(points, first, n_picks):
    """k-centre greedy from `first`: each pick maximises the squared distance to its nearest pick (first on ties)."""
    picks = [first]
    for _ in range(n_picks - 1):
        nearest = ((points[:, None, :] - points[None, picks, :]) ** 2).sum(-1).min(1)
        picks.append(int(np.argmax(nearest)))
    return picks


def test_greedy_picks_the_farthest_point_at_every_step():
    torch.manual_seed(0)
    points = torch.randn(20, 30, 5, dtype=torch.float64)
    picks = greedy_coreset(points, 10).numpy()
    for call in range(20):
        assert list(picks[call]) == brute_force_farthest(points[call].numpy(), picks[call, 0], 10)
    assert scipy.stats.chisquare(np.bincount(greedy_coreset(points[:1].expand(3000, 30, 5), 1).ravel(),
                                             minlength=30)).pvalue > P_MIN  # first pick uniform


def test_softened_greedy_picks_uniformly_above_the_97th_percentile():
    """After the first pick the current values are its squared-distance row; with 100 points the values at or above
    its 97th percentile (numpy linear interpolation, index 96.03) are the 3 largest, and the second pick is uniform
    over them: its rank among them is uniform over {0, 1, 2} across trials."""
    torch.manual_seed(1)
    points = torch.randn(1, 100, 3)
    first, second = greedy_coreset(points.expand(1500, 100, 3), 2, softened=True).numpy().T
    x = points[0].double().numpy()
    values = ((x[:, None] - x[None]) ** 2).sum(-1)
    above = values >= np.percentile(values, 97, axis=1, keepdims=True)
    assert (above.sum(1) == 3).all() and above[first, second].all()
    rank = (above[first] & (values[first] > values[first, second][:, None])).sum(1)
    assert scipy.stats.chisquare(np.bincount(rank, minlength=3)).pvalue > P_MIN


def test_greedy_sampler_anchors_are_the_selected_coreset_points(index):
    """Anchors are the selected coreset points (the reference maps them through an unrelated pool): with the whole
    storage as big batch (bigbs ≥ N, clamped where the reference crashes), the bs/spc anchors form a
    farthest-point sequence over the storage itself; each anchor is followed (after all anchors) by spc − 1
    same-class fillers."""
    torch.manual_seed(2)
    rows = torch.randn(60, 6)
    sampler = build('greedy_coreset', index, rows=rows, bs=12, samples_per_class=3, data_batchmatch_bigbs=1000)
    sampler.precompute_indices()
    labels = labels_of(index)
    for batch in sampler:
        anchors, fillers = batch[:4], np.array(batch[4:]).reshape(4, 2)
        assert anchors == brute_force_farthest(rows.double().numpy(), anchors[0], 4)
        assert (labels[fillers] == labels[anchors][:, None]).all()


def test_coreset_needs_enough_big_batch(index):
    with pytest.raises(datasampler.SamplerConfigError, match='--data_batchmatch_bigbs 3'):
        datasampler.select('greedy_coreset', make_opt(bs=8, data_batchmatch_bigbs=3), *index)


# ----------------------------------------------------------------------------------------------- D² coreset

def d2_expected_counts(points, picks, lam, step):
    """Σ over trials of P(pick `step` = j | earlier picks), P(j) ∝ g_j·A_j^λ over unpicked j (scipy density)."""
    density = scipy.stats.multivariate_normal(points.mean(0), np.cov(points.T)).pdf(points)
    squared = ((points[:, None] - points[None]) ** 2).sum(-1)
    expected = np.zeros(len(points))
    for earlier in np.unique(picks[:, :step], axis=0):
        weights = density * squared[:, earlier].sum(1) ** lam
        weights[earlier] = 0
        expected += (picks[:, :step] == earlier).all(1).sum() * weights / weights.sum()
    return expected


@pytest.mark.parametrize('lam', [0.0, 1.0, 2.5])
def test_d2_draw_probabilities(lam):
    torch.manual_seed(3)
    points = torch.tensor([[0., 0.], [1., 0.2], [0.3, 1.], [2., 2.], [-1., 0.5], [0.5, -1.5]], dtype=torch.float64)
    picks = d2_coreset(points.expand(20000, 6, 2), 3, lam).numpy()
    assert (np.sort(picks, 1)[:, 1:] != np.sort(picks, 1)[:, :-1]).all()  # without replacement
    for step in (1, 2):
        observed = np.bincount(picks[:, step], minlength=6)
        expected = d2_expected_counts(points.numpy(), picks, lam, step)
        mask = expected > 0
        assert scipy.stats.chisquare(observed[mask], expected[mask]).pvalue > P_MIN


def test_d2_start_is_the_point_nearest_to_a_gaussian_draw():
    torch.manual_seed(4)
    points = torch.tensor([[0., 0.], [1., 0.2], [0.3, 1.], [2., 2.], [-1., 0.5]], dtype=torch.float64)
    starts = d2_coreset(points.expand(20000, 5, 2), 1).numpy().ravel()
    x = points.numpy()
    z = np.random.default_rng(0).multivariate_normal(x.mean(0), np.cov(x.T), size=200000)
    reference = np.bincount(((z[:, None] - x[None]) ** 2).sum(-1).argmin(1), minlength=5) / len(z)
    assert scipy.stats.chisquare(np.bincount(starts, minlength=5), reference * len(starts)).pvalue > P_MIN


def test_d2_handles_singular_covariance_and_coinciding_points():
    """D ≥ bigbs (singular Σ, where the reference's scipy density raises) and all points equal (every A_j = 0) still
    give distinct picks."""
    torch.manual_seed(5)
    for points in (torch.randn(4, 10, 32), torch.ones(4, 10, 3)):
        picks = d2_coreset(points, 6).numpy()
        assert all(len(set(row)) == 6 for row in picks)


def test_d2_sampler_layout(index):
    sampler = build('d2_coreset', index, bs=12, samples_per_class=3, data_d2_coreset_lambda=2)
    sampler.precompute_indices()
    labels = labels_of(index)
    for batch in sampler:
        assert len(set(batch[:4])) == 4  # anchors are distinct storage rows
        assert (labels[np.array(batch[4:]).reshape(4, 2)] == labels[batch[:4]][:, None]).all()


def test_d2_rejects_negative_lambda(index):
    with pytest.raises(datasampler.SamplerConfigError, match='--data_d2_coreset_lambda'):
        datasampler.select('d2_coreset', make_opt(bs=8, data_d2_coreset_lambda=-1), *index)


# ----------------------------------------------------------------------------------------------- batch matching

def test_candidates_are_class_groups_uniform_over_distinct_classes(index):
    """Big batch draws with classes [7, 7, 7, 1] (spc 2): a candidate draw picks 7 or 1 with probability 1/2 each,
    then 2 distinct positions of that class, uniform over its 6 (or 2) positions."""
    torch.manual_seed(6)
    sampler = build('disthist_batchmatch', index, bs=4, samples_per_class=2, data_batchmatch_bigbs=8,
                    data_batchmatch_ncomps=500)
    big_classes = torch.tensor([[7, 7, 7, 1]]).expand(20, 4)
    groups = sampler.draw_candidates(big_classes).reshape(-1, 2).numpy()
    position_class = np.repeat([7, 7, 7, 1], 2)
    assert (groups[:, 0] != groups[:, 1]).all()
    assert (position_class[groups[:, 0]] == position_class[groups[:, 1]]).all()
    assert scipy.stats.binomtest((position_class[groups[:, 0]] == 7).sum(), len(groups), 0.5).pvalue > P_MIN
    of_seven = groups[position_class[groups[:, 0]] == 7].ravel()
    assert scipy.stats.chisquare(np.bincount(of_seven, minlength=6)).pvalue > P_MIN


def reference_disthist_cost(big, candidate):
    """The distance-histogram cost with numpy/scipy, as the reference computes it."""
    def upper_distances(x):
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return d[np.triu_indices(len(x), 1)]
    values = upper_distances(big)
    h_big, edges = np.histogram(values, bins=50, range=(values.min(), values.max()))
    h_sub, _ = np.histogram(upper_distances(candidate), bins=50, range=(values.min(), values.max()))
    h_big, h_sub = h_big / h_big.sum(), h_sub / h_sub.sum()
    w = scipy.stats.wasserstein_distance(h_big, h_sub) + scipy.stats.wasserstein_distance(h_sub, h_big)
    return (np.linalg.norm(big.mean(0) - candidate.mean(0)) + np.linalg.norm(big.std(0) - candidate.std(0))
            + 75 * w)


def reference_fid_cost(big, candidate):
    """The FID score with numpy/scipy's sqrtm, as the reference computes it."""
    cov_b, cov_s = np.cov(big.T), np.cov(candidate.T)
    eps = 1e-8 * np.eye(big.shape[1])
    root = scipy.linalg.sqrtm((cov_b + eps) @ (cov_s + eps)).real
    return ((big.mean(0) - candidate.mean(0)) ** 2).sum() + np.trace(cov_b) + np.trace(cov_s) - 2 * np.trace(root)


@pytest.mark.parametrize('name, reference', [('disthist_batchmatch', reference_disthist_cost),
                                             ('fid_batchmatch', reference_fid_cost)])
def test_candidate_costs_match_the_formula(index, name, reference):
    torch.manual_seed(7)
    sampler = build(name, index, bs=8, samples_per_class=2, data_batchmatch_bigbs=24, data_batchmatch_ncomps=6)
    big_classes = torch.randint(4, (3, 12))
    embeddings = torch.randn(3, 24, 4)
    candidates = sampler.draw_candidates(big_classes)
    costs = sampler.candidate_costs(embeddings, candidates).numpy()
    for call in range(3):
        x = embeddings[call].double().numpy()
        expected = [reference(x, x[candidates[call, c].numpy()]) for c in range(6)]
        np.testing.assert_allclose(costs[call], expected, rtol=1e-6, atol=1e-9)


def test_disthist_costs_of_identical_embeddings_are_zero(index):
    """All distances equal: numpy widens the histogram range to [v − 0.5, v + 0.5]; every candidate matches exactly."""
    sampler = build('disthist_batchmatch', index, data_batchmatch_bigbs=24, data_batchmatch_ncomps=3)
    candidates = sampler.draw_candidates(torch.randint(4, (2, 12)))
    costs = sampler.candidate_costs(torch.ones(2, 24, 4), candidates)
    np.testing.assert_allclose(costs.numpy(), 0.0, atol=1e-12)


def test_histogram_drops_out_of_range_values_like_numpy():
    values = torch.tensor([[0.0, 0.5, 1.0, 1.0, 2.0, 2.5, 3.0, 3.5]], dtype=torch.float64)
    low, high = torch.tensor([1.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    ours = disthist_batchmatch_sampler.normalised_histogram(values, low, high, 4).numpy()[0]
    counts, _ = np.histogram(values.numpy(), bins=4, range=(1.0, 3.0))
    np.testing.assert_allclose(ours, counts / counts.sum())


@pytest.mark.parametrize('name', ['disthist_batchmatch', 'fid_batchmatch'])
def test_batchmatch_yields_the_lowest_cost_candidate(index, name, monkeypatch):
    """Storage row g is (g, noise…), so the embeddings handed to the costs reveal the big batch's dataset indices;
    every yielded batch is the cheapest candidate's positions mapped through that big batch, in spc-class groups."""
    torch.manual_seed(8)
    rows = torch.cat([torch.arange(60.).unsqueeze(1), torch.randn(60, 5)], 1)
    sampler = build(name, index, rows=rows, bs=8, samples_per_class=2, data_batchmatch_bigbs=30,
                    data_batchmatch_ncomps=5)
    seen = []
    cost_function = type(sampler).candidate_costs

    def recording(self, embeddings, candidates):
        costs = cost_function(self, embeddings, candidates)
        seen.append((embeddings[..., 0].long(), candidates, costs))
        return costs

    monkeypatch.setattr(type(sampler), 'candidate_costs', recording)
    sampler.precompute_indices()
    big_batch, candidates, costs = (torch.cat(parts) for parts in zip(*seen))
    best = candidates[torch.arange(7), costs.argmin(1)]
    assert sampler.epoch_indices == big_batch.gather(1, best).tolist()
    labels = labels_of(index)
    groups = labels[np.array(sampler.epoch_indices)].reshape(7, 4, 2)
    assert (groups[..., 0] == groups[..., 1]).all()


def test_batchmatch_ties_go_to_the_first_candidate_and_nan_never_wins(index, monkeypatch):
    sampler = build('fid_batchmatch', index, rows=torch.arange(60.).unsqueeze(1).expand(60, 2).contiguous(),
                    data_batchmatch_ncomps=4)
    seen = []

    def fixed_costs(self, embeddings, candidates):
        seen.append((embeddings[..., 0].long(), candidates))
        return torch.tensor([[float('nan'), 3.0, 1.0, 1.0]]).expand(len(embeddings), 4)

    monkeypatch.setattr(type(sampler), 'candidate_costs', fixed_costs)
    sampler.precompute_indices()
    big_batch, candidates = (torch.cat(parts) for parts in zip(*seen))
    assert (candidates[:, 2] != candidates[:, 3]).any()
    assert sampler.epoch_indices == big_batch.gather(1, candidates[:, 2]).tolist()


def test_state_dict_round_trip_restores_the_storage(index):
    """The trainer's resume file holds `state_dict()`; a fresh sampler loading it reproduces the same epoch."""
    sampler = build('d2_coreset', index, data_mb_mom=0.5)
    sampler.delta_storage = torch.randn(60, 8)
    restored = datasampler.select('d2_coreset', make_opt(bs=8, data_batchmatch_bigbs=24, data_mb_mom=0.5), *index)
    restored.load_state_dict(sampler.state_dict())
    assert torch.equal(restored.storage, sampler.storage) and torch.equal(restored.delta_storage, sampler.delta_storage)
    for one in (sampler, restored):
        torch.manual_seed(9)
        one.precompute_indices()
    assert restored.epoch_indices == sampler.epoch_indices
