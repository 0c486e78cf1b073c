"""The fast data pipeline: crop distributions against torchvision's, the evaluation crop against the PIL
reference, per-sample randomness independent of workers and batches, device normalisation, the
evaluation cache, decoding of every image kind, and the benchmark script at a tiny size."""
import importlib.util
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision import transforms
from torchvision.transforms import functional as F1
from torchvision.transforms.v2 import functional as F2

import datasets
import evaluation
import metrics
import parameters
from datasets import DatasetError, EpochTaggedBatchSampler, device_normaliser, loader_options
from datasets.basic_dataset_scaffold import BaseDataset
from datasets.decoding import decode_rgb
from datasets.eval_cache import CachedLoader, cached
from datasets.fast_transforms import RandomResizedCropFlip, random_resized_crop_params
from datasets.image_transforms import digits_pipeline
from datasets.sample_randomness import sample_generator, sample_seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def options(*argv):
    return parameters.read_arguments(list(argv))


def photo_like(width, height, seed):
    """Smooth random content plus mild noise: compresses like a photograph, unlike pure noise."""
    rng = np.random.RandomState(seed)
    low = Image.fromarray((rng.rand(6, 8, 3) * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(low).astype(np.float64) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pipeline_images')
    paths = {}
    for name, (width, height) in {'landscape': (500, 375), 'portrait': (333, 500), 'odd': (301, 257)}.items():
        paths[name] = str(folder / '{}.jpg'.format(name))
        photo_like(width, height, len(paths)).save(paths[name], quality=90)
    rgb = photo_like(260, 300, 7)
    for mode, suffix in (('L', 'png'), ('P', 'png'), ('RGBA', 'png'), ('CMYK', 'jpg'), ('L', 'jpg')):
        paths[mode + '.' + suffix] = str(folder / 'image_{}.{}'.format(mode, suffix))
        rgb.convert(mode).save(paths[mode + '.' + suffix])
    paths['corrupt'] = str(folder / 'corrupt.jpg')
    with open(paths['landscape'], 'rb') as handle:
        data = handle.read()
    with open(paths['corrupt'], 'wb') as handle:
        handle.write(data[:len(data) // 3])
    return paths


# ------------------------------------------------------------------------- crop and flip distributions
def crop_statistics(params, height, width):
    params = np.asarray(params, dtype=np.float64)
    top, left, h, w = params.T
    return {'scale': h * w / (height * width), 'log_aspect': np.log(w / h),
            'top': (top + 0.5) / (height - h + 1), 'left': (left + 0.5) / (width - w + 1)}


@pytest.mark.parametrize('height,width', [(375, 500), (500, 333), (60, 400)])
def test_crop_parameters_follow_torchvision_distributions(height, width):
    """Two-sample KS on scale, log aspect ratio and relative position; the thin 60×400 image exercises
    the 10 tries and the central fallback (equal fallback rates)."""
    n = 3000
    fast = [random_resized_crop_params(height, width, sample_generator(0, 0, i)) for i in range(n)]
    torch.manual_seed(0)
    dummy = torch.empty(3, height, width)
    reference = [transforms.RandomResizedCrop.get_params(dummy, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    for sample in (fast, reference):
        for top, left, h, w in sample:
            assert 0 <= top <= height - h and 0 <= left <= width - w and 0 < h <= height and 0 < w <= width
    fast_stats, reference_stats = crop_statistics(fast, height, width), crop_statistics(reference, height, width)
    for key in fast_stats:
        assert stats.ks_2samp(fast_stats[key], reference_stats[key]).pvalue > 0.001, key
    central = lambda sample, h0, w0: np.mean([(h, w) == (h0, w0) for _, _, h, w in sample])  # noqa: E731
    in_ratio = width / height
    if in_ratio > 4 / 3:
        h0, w0 = height, int(round(height * 4 / 3))
        p_fast, p_ref = central(fast, h0, w0), central(reference, h0, w0)
        assert abs(p_fast - p_ref) < 4 * math.sqrt(max(p_ref, 1e-3) / n) + 0.01


def test_flip_probability_is_one_half_and_crop_params_match_the_image():
    """RandomResizedCropFlip uses the generator's first 40 draws for the crop, the next for the flip."""
    image = torch.arange(3 * 40 * 50, dtype=torch.int64).reshape(3, 40, 50).remainder(251).to(torch.uint8)
    step, n, flips = RandomResizedCropFlip(16), 2000, 0
    for i in range(n):
        params = random_resized_crop_params(40, 50, sample_generator(3, 1, i))
        generator = sample_generator(3, 1, i)
        out = step(image, generator)
        expected = F2.resized_crop(image, *params, [16, 16], antialias=True)
        flipped = torch.equal(out, expected.flip(-1)) and not torch.equal(out, expected)
        assert flipped or torch.equal(out, expected)
        flips += flipped
    assert abs(flips / n - 0.5) < 4 * math.sqrt(0.25 / n)


def test_training_crop_matches_pil_for_the_same_parameters(images):
    """Same crop box: torch's uint8 antialiased resize against PIL's bilinear (the reference)."""
    pil = Image.open(images['landscape']).convert('RGB')
    tensor = decode_rgb(images['landscape'])
    for i in range(8):
        params = random_resized_crop_params(375, 500, sample_generator(0, 0, i))
        expected = torch.from_numpy(np.array(F1.resized_crop(pil, *params, [224, 224]))).permute(2, 0, 1)
        ours = F2.resized_crop(tensor, *params, [224, 224], antialias=True)
        difference = (ours.int() - expected.int()).abs()
        assert difference.float().mean() < 0.5 and difference.max() <= 2


@pytest.mark.parametrize('augmentation', ['base', 'big', 'adv', 'red'])
def test_training_items_are_uint8_and_drawn_from_seed_epoch_index(images, augmentation):
    data = BaseDataset({0: [images['landscape'], images['portrait']]}, options('--augmentation', augmentation))
    size = 256 if augmentation == 'big' else 224
    first = data[(1, 3)][1]
    assert first.dtype == torch.uint8 and tuple(first.shape) == (3, size, size)
    assert torch.equal(first, data[(1, 3)][1]) and not torch.equal(first, data[(1, 4)][1])
    other_seed = BaseDataset({0: [images['landscape'], images['portrait']]},
                             options('--augmentation', augmentation, '--seed', '7'))
    assert not torch.equal(first, other_seed[(1, 3)][1])


# ------------------------------------------------------------------------------------- evaluation crop
@pytest.mark.parametrize('name', ['landscape', 'portrait', 'odd'])
@pytest.mark.parametrize('arch,augmentation,size', [('resnet50', 'base', 224), ('googlenet', 'base', 227),
                                                    ('resnet50', 'big', 256)])
def test_evaluation_crop_equals_resize_and_center_crop(images, name, arch, augmentation, size):
    argv = ['--arch', arch, '--augmentation', augmentation]
    fast = BaseDataset({0: [images[name]]}, options(*argv, '--data_pipeline', 'fast'), is_validation=True)
    reference = BaseDataset({0: [images[name]]}, options(*argv, '--data_pipeline', 'reference'), is_validation=True)
    label, image, index = fast[0]
    assert (label, index) == (0, 0) and image.dtype == torch.uint8 and tuple(image.shape) == (3, size, size)
    expected = (reference[0][1] * STD + MEAN) * 255
    difference = (image.float() - expected).abs()
    assert difference.mean() < 0.1 and difference.max() <= 2.0  # measured: mean 0.002, max 1


# --------------------------------------------------------------------------------- per-sample randomness
def test_sample_seed_is_stable_and_distinct():
    assert sample_seed(0, 0, 0) == sample_seed(0, 0, 0) and 0 <= sample_seed(-1, 2 ** 70, 5) < 2 ** 63
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(5) for i in range(200)}
    assert len(seeds) == 3 * 5 * 200
    assert sample_seed(np.int64(4), 1, torch.tensor(9)) == sample_seed(4, 1, 9)


def test_epoch_tagged_batch_sampler():
    batches = [[3, 1, 4], [1, 5], [9, 2, 6]]
    tagged = EpochTaggedBatchSampler(batches)
    assert len(tagged) == 3 and list(tagged) == [[(i, 0) for i in b] for b in batches]
    tagged.set_epoch(7)
    assert list(tagged) == [[(i, 7) for i in b] for b in batches]
    assert tagged.count([1, 5]) == 1  # other attributes are the wrapped sampler's


@pytest.fixture(scope='module')
def digits_data(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv('XDG_CACHE_HOME', str(tmp_path_factory.mktemp('xdg')))
    data = datasets.select('digits', options('--dataset', 'digits', '--seed', '3'), None)
    yield data
    patch.undo()


def collect(loader):
    images = {}
    for labels, batch, indices in loader:
        assert batch.dtype == torch.uint8 and indices.dtype == torch.int64
        for image, index in zip(batch, indices.tolist()):
            images[index] = image
    return images


def test_augmentation_does_not_depend_on_workers_or_batches(digits_data):
    training = digits_data['training']
    subset = list(range(0, 901, 9))
    assert torch.equal(training[5][1], training[(5, 0)][1])
    runs = []
    for workers, batch_size, order in ((0, 7, subset), (2, 13, subset[::-1])):
        sampler = EpochTaggedBatchSampler([order[i:i + batch_size] for i in range(0, len(order), batch_size)])
        sampler.set_epoch(4)
        loader = torch.utils.data.DataLoader(training, batch_sampler=sampler, num_workers=workers)
        runs.append(collect(loader))
    assert runs[0].keys() == runs[1].keys() == set(subset)
    assert all(torch.equal(runs[0][i], runs[1][i]) for i in subset)
    assert all(torch.equal(runs[0][i], training[(i, 4)][1]) for i in subset[:5])
    other_epoch = sum(not torch.equal(runs[0][i], training[(i, 5)][1]) for i in subset)
    assert other_epoch > 0.8 * len(subset)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    training[(1, 1)]
    assert torch.equal(before, torch.get_rng_state())  # the global RNG is left alone


def test_digits_fast_training_follows_the_reference_affine(digits_data):
    """Same PIL steps: with the same parameters the fast item equals the reference's transform."""
    from datasets.fast_transforms import digits_affine_params
    training = digits_data['training']
    path, _ = training.image_list[10]
    reference = transforms.Compose(training.normal_transform.transforms[:1])(Image.open(path).convert('RGB'))
    angle, translations, scale, shear = digits_affine_params(sample_generator(3, 2, 10))
    expected = F1.affine(reference, angle, list(translations), scale, list(shear), fill=0)
    assert torch.equal(training[(10, 2)][1], torch.from_numpy(np.array(expected)).permute(2, 0, 1))
    assert abs(angle) <= 10 and max(abs(t) for t in translations) <= 3.2 and 0.9 <= scale <= 1.1


def test_digits_evaluation_items_normalise_to_the_reference_bit_for_bit(digits_data):
    """The digits evaluation steps are the same PIL steps: fast + device normalisation == reference."""
    testing = digits_data['testing']
    reference = BaseDataset({key: [path for path, _ in testing.image_dict[key]] for key in testing.avail_classes},
                            options('--dataset', 'digits', '--data_pipeline', 'reference'), is_validation=True,
                            pipeline=digits_pipeline)
    normalise = device_normaliser(options('--dataset', 'digits'))
    batch = torch.stack([testing[i][1] for i in range(0, 896, 97)])
    expected = torch.stack([reference[i][1] for i in range(0, 896, 97)])
    assert batch.dtype == torch.uint8 and torch.equal(normalise(batch), expected)


# ---------------------------------------------------------------------------------- device normaliser
@pytest.mark.parametrize('arch', ['resnet50', 'bninception_frozen'])
def test_device_normaliser_equals_the_reference_normalisation(images, arch):
    opt = options('--arch', arch)
    pil = Image.open(images['odd']).convert('RGB')
    uint8 = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
    reference = BaseDataset({0: [images['odd']]}, options('--arch', arch, '--data_pipeline', 'reference'))
    expected = transforms.Compose(reference.normal_transform.transforms[-(3 if 'bninception' in arch else 2):])(pil)
    normalise = device_normaliser(opt)
    ours = normalise(torch.stack([uint8, uint8]))
    assert ours.dtype == torch.float32 and torch.equal(ours[1], expected)
    floats = torch.rand(2, 3, 4, 4)
    assert normalise(floats) is floats


# ---------------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize('name', ['L.png', 'P.png', 'RGBA.png', 'CMYK.jpg', 'L.jpg', 'landscape'])
def test_every_image_kind_decodes_to_the_pil_rgb_pixels(images, name):
    expected = torch.from_numpy(np.asarray(Image.open(images[name]).convert('RGB')).copy()).permute(2, 0, 1)
    assert torch.equal(decode_rgb(images[name]), expected)
    item = BaseDataset({0: [images[name]]}, options())[(0, 1)][1]
    assert item.dtype == torch.uint8 and tuple(item.shape) == (3, 224, 224)


def test_corrupt_image_is_a_one_line_error_naming_the_file(images):
    for is_validation in (True, False):
        data = BaseDataset({0: [images['corrupt']]}, options(), is_validation=is_validation)
        with pytest.raises(DatasetError, match='Cannot read image .*corrupt.jpg') as error:
            data[0]
        assert '\n' not in str(error.value)


# ------------------------------------------------------------------------------------ evaluation cache
class CountingDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n, self.calls = n, 0
        self.images = torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(0)).to(torch.uint8)

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        self.calls += 1
        return index % 3, self.images[index], index


def test_cache_replays_the_same_batches_without_reading_again():
    dataset = CountingDataset(23)
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, shuffle=False)
    reference = list(loader)
    cache = CachedLoader(loader, 'cpu')
    assert len(cache) == 5 and cache.dataset is dataset and cached(loader, 'none', 'cpu') is loader
    assert cache.batch_size == 5 and cache.num_workers == 0
    for labels, images, indices in cache:  # stopped early: nothing cached
        break
    assert not cache.is_filled
    dataset.calls = 0
    for _ in range(3):
        passes = list(cache)
        assert len(passes) == len(reference)
        for got, expected in zip(passes, reference):
            assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(got, expected))
    assert dataset.calls == 23 and cache.images.dtype == torch.uint8
    with pytest.raises(ValueError, match='--eval_cache gpu needs a CUDA device'):
        CachedLoader(loader, 'gpu', 'cpu')


class TinyEmbedder(torch.nn.Module):
    """Normalises uint8 batches like the loop will, then a fixed random projection."""

    def __init__(self, opt):
        super().__init__()
        self.normalise = device_normaliser(opt)
        self.projection = torch.nn.Linear(3 * 32 * 32, 8)

    def forward(self, images):
        return torch.nn.functional.normalize(self.projection(self.normalise(images).flatten(1)), dim=-1)


def test_cache_gives_the_same_metrics(digits_data):
    opt = options('--dataset', 'digits', '--kernels', '0', '--evaluation_metrics', 'e_recall@1', 'e_recall@4',
                  'mAP@R')
    torch.manual_seed(0)
    model = TinyEmbedder(opt)
    computer = metrics.MetricComputer(opt.evaluation_metrics, opt)
    loader = torch.utils.data.DataLoader(digits_data['testing'], batch_size=64, shuffle=False)
    embedder = evaluation.Embedder(model, torch.device('cpu'))

    def metric_values(loader):
        labels, features, _ = embedder(loader, ['discriminative'])
        return computer.compute_of_embeddings(labels, features, ['discriminative'], n_threads=1)
    plain = metric_values(loader)
    cache = CachedLoader(loader, 'cpu')
    first, second = metric_values(cache), metric_values(cache)
    assert cache.is_filled and plain == first == second
    assert 0 < plain['discriminative']['e_recall@1'] < 1


def test_loader_options():
    assert loader_options(options('--kernels', '0'), 'cpu') == {'num_workers': 0, 'pin_memory': False}
    assert loader_options(options('--kernels', '3'), torch.device('cuda')) == {
        'num_workers': 3, 'pin_memory': True, 'persistent_workers': True, 'prefetch_factor': 4}


# --------------------------------------------------------------------------------------------- bench
def test_bench_runs_at_a_tiny_size(capsys):
    path = os.path.join(ROOT, 'bench', 'data_pipeline.py')
    spec = importlib.util.spec_from_file_location('bench_data_pipeline', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        bench.main(['--quick'])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    for row in ('training, in process', 'evaluation uncached pass, in process', 'evaluation cached vs reference',
                'decode only'):
        assert row in printed
