"""CUDA against the CPU: every loss, every miner, the search engines, k-means, the device selection and a
one-epoch run. Skipped without CUDA; run on a GPU machine with `bash bench/gpu_check.sh`."""
import csv
import glob
import os
import subprocess
import sys

import faiss
import numpy as np
import pytest
import torch

import batch_mining
import criteria
import metrics
from criteria_fixtures import StubMiner, make_opt, random_batch
from metrics.kmeans import kmeans
from metrics.search import FaissEngine, TorchEngine, faiss_has_gpu

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA = torch.device('cuda')
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4]


@pytest.fixture(autouse=True)
def full_float32_matmul():
    """float32 products in full precision (no TF32), as on the CPU, for the duration of each test."""
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


# ----- losses ------------------------------------------------------------------------------------------

def miner_key_for(loss):
    """A miner the loss accepts: its own set-form miner, else the default triplet miner."""
    ranking = criteria.loss_class(loss)
    if not ranking.REQUIRES_BATCHMINER:
        return None
    return 'distance' if 'distance' in ranking.ALLOWED_MINING_OPS else ranking.ALLOWED_MINING_OPS[0]


class Recording:
    """The real miner, keeping what it returned so that the CUDA loss can be fed the same output."""

    def __init__(self, miner):
        self.miner, self.name, self.outputs = miner, miner.name, []

    def __call__(self, batch, labels):
        self.outputs.append(self.miner(batch, labels))
        return self.outputs[-1]


def on_device(output, device):
    if isinstance(output, torch.Tensor):
        return output.to(device)
    return output  # the set forms are lists and numpy arrays, read on any device


def fixed_fourth(ranking):
    """quadruplet draws its fourth sample at random: replaced by a fixed choice on both devices."""
    if hasattr(ranking, 'draw_fourth'):
        ranking.draw_fourth = lambda negatives: torch.arange(len(negatives), device=negatives.device).flip(0)


def evaluate(objective, batch, teacher, labels, lsd):
    batch = batch.detach().clone().requires_grad_()
    if lsd:
        total, parts = objective(batch, labels, teacher_embeddings=teacher, epoch=1)
    else:
        total, parts = objective(batch, labels)
    total.backward()
    parameter_grads = [p.grad for p in objective.parameters() if p.grad is not None]
    return {name: value.detach() for name, value in parts.items()}, batch.grad, parameter_grads


@pytest.mark.parametrize('label_device', ['cpu', 'cuda'])
@pytest.mark.parametrize('loss', criteria.BASE_LOSS_NAMES + criteria.LSD_LOSS_NAMES)
def test_loss_forward_and_backward_on_cuda_equal_the_cpu(loss, label_device):
    lsd = criteria.is_lsd(loss)
    opt = make_opt('--loss', loss, '--kd_alpha', '50', '--n_epochs', '2', loss_source=criteria.base_name(loss))
    key = miner_key_for(loss)
    recording = Recording(batch_mining.select(key, opt)) if key else None
    torch.manual_seed(0)
    cpu_objective, _ = criteria.build_objective(loss, opt, 5, recording)
    stub = StubMiner(recording.name, None) if key else None
    cuda_objective, _ = criteria.build_objective(loss, opt, 5, stub)
    cuda_objective.load_state_dict(cpu_objective.state_dict())
    cuda_objective.to(CUDA)
    for objective in (cpu_objective, cuda_objective):
        fixed_fourth(objective.ranking)

    batch, labels = random_batch(1, labels=LABELS, dtype=torch.float32)
    teacher = random_batch(2, labels=LABELS, dtype=torch.float32)[0].detach() if lsd else None
    cpu_parts, cpu_grad, cpu_parameter_grads = evaluate(cpu_objective, batch, teacher, labels, lsd)
    if key and recording.outputs:  # mined once per forward (ap_loss keeps its miner but never calls it)
        assert len(recording.outputs) == 1
        stub.output = on_device(recording.outputs[0], CUDA)
    cuda_parts, cuda_grad, cuda_parameter_grads = evaluate(
        cuda_objective, batch.to(CUDA), None if teacher is None else teacher.to(CUDA), labels.to(label_device), lsd)

    assert sorted(cuda_parts) == sorted(cpu_parts)
    for name in cpu_parts:
        assert cuda_parts[name].device.type == CUDA.type, name
        torch.testing.assert_close(cuda_parts[name].cpu(), cpu_parts[name], rtol=1e-5, atol=1e-5, msg=name)
    assert cuda_grad.device.type == CUDA.type
    torch.testing.assert_close(cuda_grad.cpu(), cpu_grad, rtol=1e-5, atol=1e-5)
    assert len(cuda_parameter_grads) == len(cpu_parameter_grads)
    for cuda_g, cpu_g in zip(cuda_parameter_grads, cpu_parameter_grads):
        torch.testing.assert_close(cuda_g.cpu(), cpu_g, rtol=1e-5, atol=1e-5)


def test_histogram_loss_is_deterministic_on_cuda():
    """Bit-identical values and gradients on repeated runs, and no op torch flags as nondeterministic."""
    criterion = criteria.select('histogram', make_opt('--loss', 'histogram')).to(CUDA)
    batch, labels = random_batch(3, labels=list(range(16)) * 7, dim=128, dtype=torch.float32)
    results = []
    torch.use_deterministic_algorithms(True)
    try:
        for _ in range(3):
            x = batch.detach().to(CUDA).requires_grad_()
            value = criterion(batch=x, labels=labels)
            value.backward()
            results.append((value.detach().cpu(), x.grad.cpu()))
    finally:
        torch.use_deterministic_algorithms(False)
    for value, grad in results[1:]:
        assert torch.equal(value, results[0][0]) and torch.equal(grad, results[0][1])


# ----- miners ------------------------------------------------------------------------------------------

VALIDITY_LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 5, 6])  # 7, 10 and 11 have no positive
HAS_POSITIVE = torch.tensor([True, True, True, True, True, True, True, False, True, True, False, False])


def check_triplets(key, triplets, device):
    assert isinstance(triplets, torch.Tensor) and triplets.dtype == torch.int64 and triplets.device == device
    assert triplets.ndim == 2 and triplets.shape[1] == 3
    triplets = triplets.cpu()
    assert len(triplets) > 0 and triplets.min() >= 0 and triplets.max() < len(VALIDITY_LABELS)
    a, p, n = triplets.T
    y = VALIDITY_LABELS
    valid = (y[a] == y[p]) & (a != p) & (y[n] != y[a])
    if key == 'intra_random':
        assert torch.all((y[a] == y[p]) & (y[a] == y[n]))
    elif key == 'rho_distance':  # a regular triplet, or a push away from a same-class sample
        assert torch.all(valid | ((p == a) & (n != a) & (y[n] == y[a])))
    elif key == 'random_distance':  # valid under a random permutation of the labels, which keeps their multiset
        assert len(triplets) == int(HAS_POSITIVE.sum()) and torch.all(a[1:] > a[:-1]) and torch.all(a != p)
    elif key == 'random':
        assert torch.all(valid)
    else:  # an anchor without a positive pairs with itself
        assert torch.all(valid | (~HAS_POSITIVE[a] & (p == a) & (y[n] != y[a])))


def check_sets(key, output):
    anchors, positives, negatives = output
    y = VALIDITY_LABELS.tolist()
    assert anchors == [i for i in range(len(y)) if HAS_POSITIVE[i]]
    for a, pos, neg in zip(anchors, positives, negatives):
        pos = [pos] if key == 'npair' else list(pos)
        assert pos and all(y[j] == y[a] and j != a for j in pos)
        assert list(neg) == [j for j in range(len(y)) if y[j] != y[a]]


@pytest.mark.parametrize('key', sorted(batch_mining.BATCHMINING_METHODS))
def test_miner_output_on_cuda_is_valid_for_cuda_and_cpu_labels(key):
    opt = make_opt('--loss', 'triplet', '--miner_parametric_support_lim', '0', '2', loss_source='triplet')
    miner = batch_mining.select(key, opt)
    batch = torch.nn.functional.normalize(torch.randn(12, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    batch = batch.to(CUDA).requires_grad_()
    outputs = {}
    for label_device in ('cuda', 'cpu'):
        torch.manual_seed(5)
        outputs[label_device] = [miner(batch, VALIDITY_LABELS.to(label_device)) for _ in range(10)]
    for label_device, draws in outputs.items():
        for output in draws:
            if key in ('npair', 'lifted'):
                check_sets(key, output)
            else:
                check_triplets(key, output, batch.device)
    if key not in ('npair', 'lifted'):  # the same generator state gives the same draws, whatever the labels
        for cuda_output, cpu_output in zip(outputs['cuda'], outputs['cpu']):
            assert torch.equal(cuda_output, cpu_output)


# ----- metrics -----------------------------------------------------------------------------------------

def exact_scores(base, queries, idx, inner_product):
    base, queries = base.astype(np.float64), queries.astype(np.float64)
    gathered = base[idx]
    if inner_product:
        return np.einsum('qd,qkd->qk', queries, gathered)
    return ((gathered - queries[:, None, :]) ** 2).sum(-1)


def cuda_engines():
    engines = [TorchEngine('cuda')]
    if faiss_has_gpu():
        engines.append(FaissEngine(gpu=True))
    return engines


@pytest.mark.parametrize('inner_product', [False, True])
def test_cuda_engines_find_the_neighbours_of_the_cpu_engine(inner_product):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((600, 16)).astype(np.float32)
    queries = rng.standard_normal((300, 16)).astype(np.float32)
    expected = FaissEngine().prepare(torch.from_numpy(base), inner_product)(torch.from_numpy(queries), 10)
    expected = expected.numpy()
    for engine in cuda_engines():
        found = engine.prepare(torch.from_numpy(base).to(CUDA), inner_product)(torch.from_numpy(queries).to(CUDA), 10)
        assert found.device.type == CUDA.type, engine.name
        found = found.cpu().numpy()
        # identical lists, up to the order of neighbours whose exact distances agree to float32 rounding
        np.testing.assert_allclose(exact_scores(base, queries, found, inner_product),
                                   exact_scores(base, queries, expected, inner_product), rtol=0, atol=1e-4,
                                   err_msg=engine.name)
        assert (found == expected).all(axis=1).mean() > 0.98, engine.name


def test_cuda_engines_give_the_metrics_of_the_cpu_engine():
    import argparse
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(15), rng.integers(2, 8, size=15))
    x = (3 * rng.standard_normal((15, 8))[labels] + rng.standard_normal((len(labels), 8))).astype(np.float32)
    opt = argparse.Namespace(n_classes=15, rho_spectrum_embed_dim=8, evaluate_on_gpu=True)
    names = metrics.DEFAULT_METRICS + ['c_recall@3', 'mAP', 'c_mAP', 'mAP@R', 'c_r_precision']
    expected = metrics.compute_metrics(x, labels, names, opt, engine=FaissEngine())
    for engine in cuda_engines():
        values = metrics.compute_metrics(torch.from_numpy(x).to(CUDA), torch.from_numpy(labels), names, opt,
                                         engine=engine)
        for name in names:
            np.testing.assert_allclose(values[name], expected[name], rtol=1e-5, atol=1e-6,
                                       err_msg='{} {}'.format(engine.name, name))


def faiss_kmeans(x, k):
    """The reference's k-means: faiss.Clustering(d, k), 20 iterations, 1..1e9 points per centroid."""
    clustering = faiss.Clustering(x.shape[1], k)
    clustering.niter, clustering.min_points_per_centroid, clustering.max_points_per_centroid = 20, 1, 10 ** 9
    clustering.train(x, faiss.IndexFlatL2(x.shape[1]))
    return faiss.vector_float_to_array(clustering.centroids).reshape(k, -1)


def blobs(seed):
    """Tight groups and k above their number, so clusters empty out and are re-seeded."""
    rng = np.random.default_rng(seed)
    n_groups, per, dim = int(rng.integers(5, 30)), int(rng.integers(3, 12)), int(rng.integers(2, 6))
    n = n_groups * per
    k = int(rng.integers(n_groups, n // 2))
    x = np.repeat(5 * rng.standard_normal((n_groups, dim)), per, axis=0) + \
        rng.uniform(0.05, 1) * rng.standard_normal((n, dim))
    return x.astype(np.float32), k


@pytest.mark.parametrize('seed', range(10))
def test_kmeans_on_cuda_equals_faiss_on_the_cpu(seed):
    x, k = blobs(seed)
    expected = faiss_kmeans(x, k)
    centroids, labels = kmeans(torch.from_numpy(x).to(CUDA), k)
    assert centroids.device.type == CUDA.type and labels.device.type == CUDA.type
    np.testing.assert_allclose(centroids.cpu().numpy(), expected, rtol=0, atol=1e-5)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(expected)
    np.testing.assert_array_equal(labels.cpu().numpy(), index.search(x, 1)[1][:, 0])


# ----- device selection --------------------------------------------------------------------------------

SELECT = ('import sys, torch; from runtime.device import select_device, DeviceError\n'
          'try:\n'
          '    d = select_device([int(sys.argv[1])], False)\n'
          '    torch.ones(1, device=d)\n'
          '    import os; print(d, torch.cuda.current_device() if d.type == "cuda" else "-", '
          'os.environ.get("CUDA_VISIBLE_DEVICES"))\n'
          'except DeviceError as e:\n'
          '    print("DeviceError", e)\n')


def select_in_fresh_process(index, visible):
    """select_device in a new process: CUDA_VISIBLE_DEVICES only matters before CUDA starts."""
    env = dict(os.environ)
    env.pop('CUDA_VISIBLE_DEVICES', None)
    if visible is not None:
        env['CUDA_VISIBLE_DEVICES'] = visible
    result = subprocess.run([sys.executable, '-c', SELECT, str(index)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1], result.stderr


def test_device_selection_with_a_real_device():
    count = torch.cuda.device_count()
    physical = os.environ.get('CUDA_VISIBLE_DEVICES')
    first = physical.split(',')[0] if physical else '0'
    # the scheduler's variable is kept, --gpu indexes the visible devices
    assert select_in_fresh_process(0, first)[0] == 'cuda:0 0 {}'.format(first)
    # the empty variable forces the CPU
    line, err = select_in_fresh_process(0, '')
    assert line == 'cpu -' and 'training on the CPU' in err
    # an index beyond the visible devices is a one-line error
    assert select_in_fresh_process(1, first)[0].startswith('DeviceError --gpu 1: only 1 GPU(s) visible')
    if physical is None:  # unset: the reference's behaviour, physical GPU N becomes cuda:0
        assert select_in_fresh_process(count - 1, None)[0] == 'cuda:0 0 {}'.format(count - 1)
        assert select_in_fresh_process(count, None)[0].startswith('DeviceError --gpu {}:'.format(count))
    # in this process: cuda:<i> is made current and usable
    from runtime.device import select_device
    device = select_device([count - 1], False, environ={'CUDA_VISIBLE_DEVICES': physical or 'all'})
    assert device == torch.device('cuda', count - 1) and torch.cuda.current_device() == count - 1
    assert torch.ones(2, device=device).sum().item() == 2
    torch.cuda.set_device(0)


# ----- one epoch ---------------------------------------------------------------------------------------

# a loss without a miner: miners draw from the generator of the embeddings' device, so a mined loss takes
# different triplets on CUDA and on the CPU; without one the two runs differ only by float rounding
EPOCH = ['--dataset', 'digits', '--arch', 'resnet18_normalize', '--not_pretrained', '--loss',
         'multisimilarity_lsd', '--n_epochs', '1', '--bs', '40', '--samples_per_class', '4', '--embed_dim', '8',
         '--kernels', '0', '--no_train_metrics', '--seed', '0', '--amp', 'off', '--data_pipeline', 'reference',
         '--eval_cache', 'none', '--savename', 'run']


def last_row(path):
    with open(path, newline='') as handle:
        rows = list(csv.reader(handle))
    return {name: float(value) for name, value in zip(rows[0], rows[-1])}


# main.py with TF32 off: cuDNN convolutions default to TF32 on CUDA (10 mantissa bits), which alone would
# move the metrics by more than the tolerance; this test compares float32 on both devices
FLOAT32_MAIN = ('import runpy, sys, torch\n'
                'torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False\n'
                'sys.argv = ["main.py"] + sys.argv[1:]\n'
                'runpy.run_path("main.py", run_name="__main__")\n')


def one_epoch(tmp_path, visible):
    env = dict(os.environ)
    env.pop('CUDA_VISIBLE_DEVICES', None)
    if visible is not None:
        env['CUDA_VISIBLE_DEVICES'] = visible
    result = subprocess.run([sys.executable, '-c', FLOAT32_MAIN, *EPOCH, '--save_path', str(tmp_path)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    values = {}
    for path in glob.glob(os.path.join(str(tmp_path), 'digits', 'run', 'CSV_Logs', 'Data_Test_*.csv')):
        values.update(last_row(path))
    assert values, 'no Test metrics written'
    return values, result.stderr


def test_one_digits_epoch_on_cuda_is_within_1e3_of_the_cpu_run(tmp_path):
    import datasets
    import parameters
    n_test = len(datasets.select('digits', parameters.read_arguments(EPOCH), '')['testing'])
    cuda_values, cuda_err = one_epoch(tmp_path / 'cuda', os.environ.get('CUDA_VISIBLE_DEVICES'))
    cpu_values, cpu_err = one_epoch(tmp_path / 'cpu', '')
    assert 'training on the CPU' in cpu_err and 'training on the CPU' not in cuda_err
    assert sorted(cuda_values) == sorted(cpu_values)
    for name, value in cpu_values.items():
        # Recall@k counts queries: one neighbour swapped by rounding moves it by 1/n_test (1.1e-3 on the
        # 896 test digits), so it may differ by up to two queries
        tolerance = max(1e-3, 2.0 / n_test + 1e-12) if 'recall' in name else 1e-3
        assert abs(cuda_values[name] - value) <= tolerance, (name, cuda_values[name], value)
