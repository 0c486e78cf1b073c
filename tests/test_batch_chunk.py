"""--batch_chunk C: the chunked two-pass step gives the unchunked step's gradient (training/chunked_step.py).

The gradient checks run the real `engine.train_one_epoch` in float64 with a zero learning rate, so the gradients
of the last step stay on the parameters; the unchunked step is the reference. Random layers and BatchNorm that
trains are compared with the step computed chunk by chunk with gradient in one pass (the same random draws and
the same per-chunk statistics), which is what the two passes must reproduce.
"""
import os
import subprocess
import sys

import pytest
import timm.layers
import torch

import architectures
import batch_mining
import criteria
import parameters
from conftest import TINY_FROZEN_NETWORK, clean_environment, csv_logs, run_trainer_in_process
from tiny_backbone import TinyBackbone
from training import chunked_step, engine
from runtime.precision import Precision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = torch.device('cpu')
FLOAT64_RTOL = 1e-10
BATCH, CLASSES, CHUNK = 16, 4, 5   # chunks of 5, 5, 5 and 1 images


def relative_error(actual, expected):
    scale = float(expected.norm())
    difference = float((actual - expected).norm())
    return difference / scale if scale else difference


def options(loss, arch, flags=()):
    return parameters.read_arguments(['--loss', loss, '--arch', arch, '--not_pretrained', '--embed_dim', '8',
                                      '--bs', str(BATCH), '--samples_per_class', '4', '--n_epochs', '4',
                                      '--input_size', '16', '--kd_alpha', '50', *flags])


def batches(n_steps, dtype=torch.float64):
    generator = torch.Generator().manual_seed(5)
    return [(torch.arange(BATCH) % CLASSES, torch.randn(BATCH, 3, 16, 16, generator=generator, dtype=dtype),
             torch.arange(BATCH) + BATCH * step) for step in range(n_steps)]


def train_steps(loss, arch, chunk, flags=(), n_steps=2, amp='off', dtype=torch.float64, clip_grad=0.0,
                network=None):
    """Losses, gradients (backbone and criterion) of the last of `n_steps` steps of epoch 1, and the objective."""
    opt = options(loss, arch, flags)
    torch.manual_seed(0)
    model = (network() if network else architectures.select(arch, opt)).to(dtype)
    teacher = None
    if criteria.is_lsd(loss):
        torch.manual_seed(1)   # a teacher different from the student, in train mode like the trainer's
        teacher = architectures.select(arch, opt).to(dtype)
    torch.manual_seed(2)
    miner = batch_mining.select(opt.batch_mining, opt, loss=loss) if criteria.requires_miner(loss) else None
    objective, groups = criteria.build_objective(loss, opt, CLASSES, miner)
    objective.to(dtype)
    optimizer = torch.optim.SGD([{'params': list(model.parameters())}] + groups, lr=0.0)
    precision = Precision(amp, 'off', CPU)
    torch.manual_seed(3)   # the miners' stream
    means, _ = engine.train_one_epoch(model, objective, optimizer, batches(n_steps, dtype), 1, device=CPU,
                                      precision=precision, normalise=lambda images: images, teacher=teacher,
                                      clip_grad=clip_grad, batch_chunk=chunk)
    grads = {'model.' + name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    grads.update({'criterion.' + name: p.grad.clone() for name, p in objective.named_parameters()
                  if p.grad is not None})
    return means, grads, objective, precision


# loss, backbone, flags, criterion parameters that train
CASES = {
    'triplet+distance, ViT, clipped': ('triplet', 'timm/test_vit_normalize', ['--batch_mining', 'distance'], set()),
    'multisimilarity, frozen ResNet': ('multisimilarity', 'timm/test_resnet_frozen_normalize', [], set()),
    'proxyanchor, frozen ResNet': ('proxyanchor', 'timm/test_resnet_frozen_normalize', [], {'criterion.ranking.proxies'}),
    'multisimilarity + memory, ViT': ('multisimilarity', 'timm/test_vit_normalize', ['--xbm_size', '40'], set()),
    'margin_lsd + teacher, frozen ResNet': ('margin_lsd', 'timm/test_resnet_frozen_normalize',
                                            ['--batch_mining', 'distance'], {'criterion.ranking.beta'}),
}


@pytest.mark.parametrize('case', list(CASES))
def test_chunked_gradients_equal_the_unchunked_step_in_float64(case):
    loss, arch, flags, criterion_grads = CASES[case]
    clip = 0.05 if 'clipped' in case else 0.0
    n_steps = 2 if '--xbm_size' in flags else 1   # the memory joins in the second step
    means, reference, objective, _ = train_steps(loss, arch, 0, flags, clip_grad=clip, n_steps=n_steps)
    chunked_means, grads, chunked_objective, _ = train_steps(loss, arch, CHUNK, flags, clip_grad=clip,
                                                             n_steps=n_steps)
    assert grads.keys() == reference.keys()
    assert criterion_grads == {name for name in grads if name.startswith('criterion.')}
    for name, grad in reference.items():
        assert relative_error(grads[name], grad) <= FLOAT64_RTOL, name
    for key, value in means.items():
        assert chunked_means[key] == pytest.approx(value, rel=1e-12), key
    if objective.memory is not None:   # filled once per step with the whole batch, as without chunks
        assert chunked_objective.memory.filled == objective.memory.filled == n_steps * BATCH
        assert torch.allclose(chunked_objective.memory.embeddings, objective.memory.embeddings, rtol=0, atol=1e-13)
        assert chunked_objective.memory.iteration == objective.memory.iteration == n_steps


def test_the_comparison_sees_a_missing_chunk():
    """The check above can fail: back-propagating all chunks but the last gives another gradient."""
    loss, arch, flags, _ = CASES['multisimilarity, frozen ResNet']
    _, reference, _, _ = train_steps(loss, arch, 0, flags, n_steps=1)
    step = chunked_step.ChunkedStep
    try:
        class SkipsLastChunk(step):
            def backward(self, loss):
                self.bounds = self.bounds[:-1]
                super().backward(loss)
        engine.ChunkedStep = SkipsLastChunk
        _, grads, _, _ = train_steps(loss, arch, CHUNK, flags, n_steps=1)
    finally:
        engine.ChunkedStep = step
    assert max(relative_error(grads[name], grad) for name, grad in reference.items()) > 1e-3


def test_amp_scales_the_loss_once_and_steps_the_scaler_once_per_batch():
    """fp16 on the CPU (autocast + GradScaler) with the tiny linear network: the unscaled gradients agree with the
    unchunked step's to half-precision rounding, and the scaler made the same steps."""
    def network():
        return TinyBackbone(8)
    results = [train_steps('multisimilarity', 'resnet18', chunk, amp='fp16', dtype=torch.float32, n_steps=3,
                           network=network) for chunk in (0, CHUNK)]
    (_, reference, _, scaler_a), (_, grads, _, scaler_b) = results
    assert grads.keys() == reference.keys() and reference
    for name, grad in reference.items():
        assert relative_error(grads[name], grad) <= 1e-2, name
    assert scaler_a.scaler.state_dict() == scaler_b.scaler.state_dict()
    assert scaler_b.scaler.state_dict()['_growth_tracker'] == 3   # one update per batch, not per chunk


# ----------------------------------------------------------------------------------------------- random layers, BN

class RandomLayers(torch.nn.Module):
    """Dropout and timm's DropPath (drawn with bernoulli_ on the default generator) before the embedding."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(48, 32)
        self.dropout = torch.nn.Dropout(0.3)
        self.drop_path = timm.layers.DropPath(0.4)
        self.head = torch.nn.Linear(32, 8)

    def forward(self, images):
        pooled = torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
        hidden = self.drop_path(self.dropout(torch.relu(self.body(pooled))))
        return torch.nn.functional.normalize(self.head(hidden), dim=-1), pooled


class TrainingBatchNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2, bias=False), torch.nn.BatchNorm2d(6),
                                            torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(6, 8)

    def forward(self, images):
        return torch.nn.functional.normalize(self.head(self.features(images)), dim=-1)


def random_loss(embeddings):
    """A loss that draws from the generator, as a miner does."""
    similarities = embeddings @ embeddings.T
    return (similarities * torch.rand(similarities.shape, dtype=embeddings.dtype)).sum()


def chunkwise_reference(model, images):
    """Each chunk's forward with gradient in one pass: the random draws and batch statistics the chunked step
    must reproduce."""
    embeddings = torch.cat([chunked_step.embedding_of(model(images[start:stop]))
                            for start, stop in chunked_step.chunk_bounds(len(images), CHUNK)])
    loss = random_loss(embeddings)
    loss.backward()
    return loss


def chunked(model, images):
    step = chunked_step.ChunkedStep(model, images, CHUNK, Precision('off', 'off', CPU))
    embeddings, _, _, _ = step.forward(torch.zeros(len(images)), torch.arange(len(images)))
    loss = random_loss(embeddings)
    step.backward(loss)
    return loss


def compare_with_chunkwise(network):
    images = batches(1)[0][1]
    results = []
    for run in (chunkwise_reference, chunked):
        torch.manual_seed(0)
        model = network().double().train()
        torch.manual_seed(7)
        loss = run(model, images)
        results.append((loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()},
                        {name: b.clone() for name, b in model.named_buffers()}, torch.get_rng_state()))
    return results


def test_random_layers_replay_the_same_draws_in_both_passes():
    (loss_a, grads_a, _, rng_a), (loss_b, grads_b, _, rng_b) = compare_with_chunkwise(RandomLayers)
    assert float(loss_b) == pytest.approx(float(loss_a), rel=1e-12)
    for name, grad in grads_a.items():
        assert relative_error(grads_b[name], grad) <= FLOAT64_RTOL, name
    assert torch.equal(rng_a, rng_b)   # the generator continues after the loss's draws, as without chunks


def test_without_the_replay_the_gradient_differs():
    original = chunked_step.set_random_state
    try:
        chunked_step.set_random_state = lambda state, device: None
        (_, grads_a, _, _), (_, grads_b, _, _) = compare_with_chunkwise(RandomLayers)
    finally:
        chunked_step.set_random_state = original
    assert relative_error(grads_b['body.weight'], grads_a['body.weight']) > 1e-3


def test_training_batchnorm_normalises_per_chunk_and_updates_its_statistics_once_per_chunk():
    (_, grads_a, buffers_a, _), (_, grads_b, buffers_b, _) = compare_with_chunkwise(TrainingBatchNorm)
    for name, grad in grads_a.items():
        assert relative_error(grads_b[name], grad) <= FLOAT64_RTOL, name
    n_chunks = len(chunked_step.chunk_bounds(BATCH, CHUNK))
    assert int(buffers_b['features.1.num_batches_tracked']) == n_chunks
    for name, buffer in buffers_a.items():
        assert torch.allclose(buffers_b[name].double(), buffer.double(), rtol=1e-12, atol=0), name


def test_the_start_up_notice_names_batchnorm_that_trains_only():
    opt = options('margin', 'timm/test_resnet_frozen_normalize')
    frozen = architectures.select(opt.arch, opt)
    vit = architectures.select('timm/test_vit_normalize', options('margin', 'timm/test_vit_normalize'))
    training = TrainingBatchNorm().eval()
    assert chunked_step.startup_notice(8, frozen) is None and chunked_step.startup_notice(8, vit) is None
    assert chunked_step.startup_notice(0, training) is None
    line = chunked_step.startup_notice(8, training)
    assert '--batch_chunk 8: 1 BatchNorm layers' in line and '\n' not in line
    assert not training.training   # the model's modes are left as they were


def test_the_trainer_prints_the_notice_at_start_up(tmp_path, capsys):
    from conftest import TINY_NETWORK
    from training import loop
    flags = ['--dataset', 'digits', '--not_pretrained', '--kernels', '0', '--bs', '40', '--samples_per_class', '4',
             '--no_plots', '--save_path', str(tmp_path)]
    loop.TrainingRun(parameters.read_arguments(flags + [*TINY_NETWORK, '--batch_chunk', '8']), True)
    notices = [line for line in capsys.readouterr().err.splitlines() if '--batch_chunk' in line]
    assert len(notices) == 1 and notices[0].startswith('Notice: --batch_chunk 8: ') and 'ghost batch' in notices[0]
    loop.TrainingRun(parameters.read_arguments(flags + [*TINY_FROZEN_NETWORK, '--batch_chunk', '8']), True)
    assert '--batch_chunk' not in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- trainer

RUN_ARGS = ['--dataset', 'digits', *TINY_FROZEN_NETWORK, '--not_pretrained', '--bs', '40', '--samples_per_class',
            '4', '--kernels', '0', '--embed_dim', '16', '--lr', '0.001', '--seed', '3', '--loss', 'margin_lsd',
            '--batch_mining', 'distance', '--kd_alpha', '20', '--n_epochs', '2', '--no_train_metrics',
            '--evaluation_metrics', 'e_recall@1', 'nmi', '--no_plots', '--savename', 'run']


def train(save_path, *extra, driver=()):
    """A fresh process (runs compared exactly, see tests/conftest.py); returns (result, run folder)."""
    command = [sys.executable, *(driver or ['main.py'])] + RUN_ARGS + list(extra) + ['--save_path', str(save_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=clean_environment(), timeout=600)
    return done, str(save_path / 'digits' / 'run')


@pytest.fixture(scope='module')
def chunked_run(tmp_path_factory):
    """Two epochs (the teacher runs in the second) with chunks of 7 images: 6 chunks of a batch of 40."""
    done, folder = train(tmp_path_factory.mktemp('chunked'), '--batch_chunk', '7')
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.fixture(scope='module')
def one_epoch_runs(tmp_path_factory):
    """One epoch without the flag and with --batch_chunk 0."""
    folders = []
    for name, extra in (('plain', []), ('zero', ['--batch_chunk', '0'])):
        done, folder = train(tmp_path_factory.mktemp(name), '--n_epochs', '1', *extra)
        assert done.returncode == 0, done.stderr[-3000:]
        folders.append(folder)
    return folders


def without_timing(logs):
    return {name: rows for name, rows in logs.items() if name != 'Data_Train_time.csv'}


def test_batch_chunk_zero_is_the_run_without_the_flag(one_epoch_runs):
    plain, zero = (without_timing(csv_logs(folder)) for folder in one_epoch_runs)
    assert plain == zero and 'Data_Model Grad_L2.csv' in plain


def grad_rms(folder):
    return [float(row[0]) for row in csv_logs(folder, 'Data_Model Grad_L2')['Data_Model Grad_L2.csv'][1:]]


def test_a_chunked_run_takes_the_unchunked_first_step(one_epoch_runs, chunked_run):
    """float32 through the trainer: the first step's gradient agrees to rounding (the float64 checks above prove
    the mathematics); a different batch or a missing chunk would be far off."""
    plain, chunked = grad_rms(one_epoch_runs[0]), grad_rms(chunked_run)
    assert len(chunked) == 2 * len(plain)
    assert chunked[0] == pytest.approx(plain[0], rel=1e-5)


def test_a_chunked_run_killed_and_resumed_equals_the_uninterrupted_one(tmp_path, chunked_run):
    killed, folder = train(tmp_path, '--batch_chunk', '7', driver=['tests/kill_during_epoch.py', '1', '3'])
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = subprocess.run([sys.executable, 'main.py', '--resume', folder], cwd=ROOT, capture_output=True,
                             text=True, env=clean_environment(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert without_timing(csv_logs(folder)) == without_timing(csv_logs(chunked_run))


def test_a_negative_chunk_is_a_one_line_error(tmp_path):
    result = run_trainer_in_process(RUN_ARGS + ['--batch_chunk', '-2', '--save_path', str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip() == 'error: --batch_chunk must not be negative (got -2; 0 = off).'
    assert not os.path.exists(tmp_path / 'digits')
