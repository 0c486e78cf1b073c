"""timm backbones (`--arch timm/<model name>`) in one process: the preprocessing read from the pretrained
config, the reference's head on timm's pre-logits, the tokens, local weight files, and the transformer
recipe's pieces (AdamW, warm-up + cosine, gradient clipping). Only timm's tiny test models are built, with
random weights: nothing is downloaded."""
import math
import os

import pytest
import torch
from torch import nn
from torchvision.transforms import InterpolationMode

import architectures
import datasets
import parameters
from architectures import timm_backbone
from datasets import fast_transforms, image_transforms
from training import engine, optimization, setup
from runtime.precision import Precision
from utilities import logger

timm = pytest.importorskip('timm')

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def options(*argv):
    return parameters.read_arguments(['--not_pretrained', '--embed_dim', '8'] + list(argv))


# ----- preprocessing from the pretrained config -------------------------------------------------------

@pytest.mark.parametrize('arch,mean,std,size,crop_pct,resize', [
    ('timm/vit_base_patch16_clip_224.openai_normalize', CLIP_MEAN, CLIP_STD, 224, 0.9, 248),
    ('timm/vit_small_patch16_224.dino_normalize', IMAGENET_MEAN, IMAGENET_STD, 224, 0.9, 248),
    ('timm/convnext_small.fb_in22k_frozen_normalize', IMAGENET_MEAN, IMAGENET_STD, 224, 0.875, 256),
    ('timm/vit_small_patch14_dinov2.lvd142m_normalize', IMAGENET_MEAN, IMAGENET_STD, 518, 1.0, 518),
])
def test_preprocessing_constants_of_clip_dino_and_imagenet_names(arch, mean, std, size, crop_pct, resize):
    """The evaluation resize is floor(input size / crop_pct), as timm's evaluation transform computes it."""
    config = timm_backbone.preprocessing(arch)
    assert config == timm_backbone.Preprocessing(mean, std, size, 'bicubic', crop_pct)
    assert config.resize_size == resize == math.floor(size / crop_pct)


def test_both_pipelines_normalise_resize_and_crop_as_the_clip_config_says():
    opt = options('--arch', 'timm/vit_base_patch16_clip_224.openai_normalize', '--data_pipeline', 'reference')
    crop_size, f_norm, pipeline = image_transforms.benchmark_pipeline(opt, is_validation=True)
    resize, crop = pipeline.transforms[0], pipeline.transforms[1]
    assert crop_size == 224 and resize.size == 248 and resize.interpolation == InterpolationMode.BICUBIC
    assert crop.size == (224, 224) and f_norm.mean == list(CLIP_MEAN) and f_norm.std == list(CLIP_STD)
    train_crop = image_transforms.benchmark_pipeline(opt, is_validation=False)[2].transforms[0]
    assert train_crop.size == (224, 224) and train_crop.interpolation == InterpolationMode.BICUBIC
    fast_eval = fast_transforms.fast_benchmark_pipeline(opt, is_validation=True).steps[0]
    assert (fast_eval.size, fast_eval.resize, fast_eval.interpolation) == (224, 248, InterpolationMode.BICUBIC)
    fast_train = fast_transforms.fast_benchmark_pipeline(opt, is_validation=False).steps[0]
    assert (fast_train.size, fast_train.interpolation) == (224, InterpolationMode.BICUBIC)
    normaliser = datasets.device_normaliser(opt)
    assert tuple(normaliser.mean) == CLIP_MEAN and tuple(normaliser.std) == CLIP_STD


def test_fast_and_reference_evaluation_crops_agree_to_one_intensity_level(tmp_path):
    """Bicubic resize + centre crop with CLIP's statistics: the uint8 pipeline normalised on the device and the
    PIL pipeline give the same tensor up to one intensity level (1/255 over CLIP's smallest std)."""
    import numpy as np
    from PIL import Image
    path = str(tmp_path / 'image.jpg')
    Image.fromarray((np.random.RandomState(0).rand(120, 90, 3) * 255).astype(np.uint8)).save(path)
    opt = options('--arch', 'timm/vit_base_patch16_clip_224.openai_normalize', '--input_size', '64')
    fast = datasets.device_normaliser(opt)(fast_transforms.fast_benchmark_pipeline(opt, True)(path, (0, 0, 0))[None])
    with Image.open(path) as image:
        reference = image_transforms.benchmark_pipeline(opt, True)[2](image.convert('RGB'))[None]
    assert fast.shape == reference.shape == (1, 3, 64, 64)
    assert (fast - reference).abs().max().item() <= 1 / 255 / min(CLIP_STD) + 1e-5


def test_input_size_overrides_the_config_and_sizes_the_digits():
    opt = options('--arch', 'timm/vit_small_patch16_224.dino_normalize', '--input_size', '32')
    assert timm_backbone.preprocessing(opt.arch, opt.input_size).input_size == 32
    assert image_transforms.digits_pipeline(opt, is_validation=True)[0] == 32
    assert fast_transforms.fast_digits_pipeline(opt, is_validation=False).size == 32
    eval_steps = image_transforms.benchmark_pipeline(opt, is_validation=True)[2].transforms
    assert eval_steps[0].size == 35 and eval_steps[1].size == (32, 32)  # floor(32 / 0.9)


def test_reference_backbones_keep_the_reference_preprocessing():
    opt = options('--arch', 'resnet50_frozen_normalize')
    crop_size, f_norm, pipeline = image_transforms.benchmark_pipeline(opt, is_validation=True)
    assert crop_size == 224 and pipeline.transforms[0].size == 256
    assert pipeline.transforms[0].interpolation == InterpolationMode.BILINEAR
    assert f_norm.mean == list(IMAGENET_MEAN) and image_transforms.digits_pipeline(opt, True)[0] == 32
    fast_eval = fast_transforms.fast_benchmark_pipeline(opt, is_validation=True).steps[0]
    assert (fast_eval.size, fast_eval.resize, fast_eval.interpolation) == (224, 256, InterpolationMode.BILINEAR)


# ----- names, tokens, start-up checks -----------------------------------------------------------------

def test_tokens_are_split_off_the_model_name_in_any_order():
    assert timm_backbone.split_arch('timm/vit_small_patch14_dinov2.lvd142m_frozen_normalize') == \
        ('vit_small_patch14_dinov2.lvd142m', {'_frozen', '_normalize'})
    assert timm_backbone.split_arch('timm/convnext_small_normalize_frozen') == \
        ('convnext_small', {'_frozen', '_normalize'})
    # a timm ResNet-50 is timm's, not the reference's
    assert architectures.backbone_of('timm/resnet50.a1_in1k_normalize') == 'timm'


@pytest.mark.parametrize('argv,words', [
    (['--arch', 'timm/no_such_model_normalize'], ['--arch', 'no_such_model']),
    (['--arch', 'timm/vit_small_patch16_224.no_such_tag'], ['--arch', 'no_such_tag']),
    (['--arch', 'resnet50_normalize', '--input_size', '64'], ['--input_size', 'timm']),
    (['--arch', 'timm/test_vit', '--savename', 'a/b'], ['--savename']),
    (['--arch', 'timm/test_vit', '--pretrained_weights', '/no/such/file.pth'], ['--pretrained_weights']),
    (['--arch', 'timm/test_vit', '--warmup_epochs', '2'], ['--warmup_epochs', 'cosine']),
    (['--arch', 'timm/test_vit', '--optim', 'lamb'], ['--optim']),
])
def test_bad_backbone_options_are_one_line_startup_errors(argv, words):
    opt = parameters.read_arguments(['--dataset', 'digits', '--not_pretrained'] + argv)
    with pytest.raises(setup.StartupError) as caught:
        setup.validate_options(opt, lsd_trainer=True)
    message = str(caught.value)
    assert '\n' not in message and all(word in message for word in words), message


def test_date_named_run_folder_of_a_timm_name_sits_directly_under_the_results_folder():
    path = logger.run_folder_name('/results/digits', '', 'digits', 'timm/vit_small_patch16_224.dino_normalize')
    assert os.path.dirname(path) == '/results/digits'
    assert os.path.basename(path).startswith('DIGITS_TIMM-VIT_SMALL_PATCH16_224.DINO_NORMALIZE_')


# ----- the network -----------------------------------------------------------------------------------

@pytest.mark.parametrize('name,size', [('test_vit', 32), ('test_convnext', 32), ('test_resnet', 32)])
def test_head_is_a_linear_map_of_timms_pre_logits_and_trains(name, size):
    torch.manual_seed(0)
    opt = options('--arch', 'timm/{}_normalize'.format(name), '--input_size', str(size))
    network = architectures.select(opt.arch, opt)
    images = torch.randn(4, 3, size, size)
    embedding, (pooled, _) = network(images)
    trunk = network.model
    expected_pooled = trunk.forward_head(trunk.forward_features(images), pre_logits=True)
    torch.testing.assert_close(pooled, expected_pooled)
    assert trunk.last_linear.in_features == trunk.num_features and pooled.shape == (4, trunk.num_features)
    torch.testing.assert_close(embedding, nn.functional.normalize(trunk.last_linear(pooled), dim=-1))
    embedding.sum().backward()
    assert all(p.grad is not None for p in network.parameters() if p.requires_grad)


def test_no_head_embeds_with_the_pooled_features_and_needs_their_number():
    opt = options('--arch', 'timm/test_vit', '--input_size', '32', '--no_head', '--embed_dim', '64')
    network = architectures.select(opt.arch, opt)
    images = torch.randn(2, 3, 32, 32)
    embedding, (pooled, _) = network(images)
    assert network.model.last_linear is None and torch.equal(embedding, pooled) and embedding.shape == (2, 64)
    with pytest.raises(architectures.UnknownArchitectureError, match='--embed_dim 64'):
        architectures.select(opt.arch, options('--arch', 'timm/test_vit', '--no_head', '--input_size', '32'))


def test_frozen_fixes_batchnorm_statistics_and_tells_when_there_is_none(capsys):
    opt = options('--arch', 'timm/test_resnet_frozen', '--input_size', '32')
    network = architectures.select(opt.arch, opt).train()
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    before = [m.running_mean.clone() for m in norms]
    network(torch.randn(4, 3, 32, 32))
    assert norms and not any(m.training for m in norms)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    architectures.select('timm/test_vit_frozen', options('--arch', 'timm/test_vit_frozen', '--input_size', '32'))
    assert 'no BatchNorm' in capsys.readouterr().err


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    opt = options('--arch', 'timm/test_vit_normalize', '--input_size', '32')
    plain = architectures.select(opt.arch, opt)
    checkpointed = architectures.select(opt.arch, options('--arch', opt.arch, '--input_size', '32',
                                                          '--grad_checkpointing'))
    checkpointed.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 32, 32)
    for network in (plain, checkpointed):
        network.train()
        network(images)[0].square().sum().backward()
    assert checkpointed.model.grad_checkpointing
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_freeze_patch_embed_leaves_it_out_of_the_optimizer():
    opt = options('--arch', 'timm/test_vit_normalize', '--input_size', '32', '--freeze_patch_embed')
    network = architectures.select(opt.arch, opt)
    frozen = {id(p) for p in network.model.patch_embed.parameters()}
    groups = optimization.network_parameter_groups(network, opt)
    assert frozen and not frozen & {id(p) for group in groups for p in group['params']}
    assert len(groups[0]['params']) == sum(1 for p in network.parameters()) - len(frozen)


# ----- --pretrained_weights -----------------------------------------------------------------------------

def test_pretrained_weights_file_gives_the_embeddings_of_the_model_it_was_written_from(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(1)
    source = timm.create_model('test_vit', pretrained=False, img_size=32).eval()  # with its 1000-class head
    path = str(tmp_path / 'test_vit.safetensors')
    save_file(source.state_dict(), path)
    torch.manual_seed(2)
    opt = options('--arch', 'timm/test_vit', '--input_size', '32', '--no_head', '--embed_dim', '64',
                  '--pretrained_weights', path)
    network = architectures.select(opt.arch, opt).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(images), pre_logits=True)
        torch.testing.assert_close(network(images)[0], expected, rtol=0, atol=0)


def test_pretrained_weights_work_for_a_reference_backbone_and_reject_a_foreign_file(tmp_path):
    import torchvision
    torch.manual_seed(3)
    source = torchvision.models.resnet18(weights=None)
    path = str(tmp_path / 'resnet18.pth')
    torch.save(source.state_dict(), path)
    network = architectures.select('resnet18_normalize', options('--arch', 'resnet18_normalize',
                                                                  '--pretrained_weights', path))
    own = network.model.state_dict()
    assert all(torch.equal(own[key], value) for key, value in source.state_dict().items() if not key.startswith('fc.'))
    foreign = str(tmp_path / 'foreign.pth')
    torch.save({'conv.weight': torch.zeros(1)}, foreign)
    with pytest.raises(architectures.PretrainedWeightsUnavailable, match='--pretrained_weights .*missing'):
        architectures.select('resnet18_normalize', options('--arch', 'resnet18_normalize',
                                                            '--pretrained_weights', foreign))


# ----- optimizer, schedule, clipping -------------------------------------------------------------------

def test_adamw_decays_the_weights_decoupled_from_the_gradient():
    """With a zero gradient Adam's moments stay zero: AdamW moves w to w·(1 - lr·decay), nothing else."""
    weight = nn.Parameter(torch.tensor([2.0]))
    optimizer = optimization.build_optimizer([{'params': [weight], 'lr': 0.1, 'weight_decay': 0.5}],
                                      parameters.read_arguments(['--optim', 'adamw']))
    weight.grad = torch.zeros(1)
    optimizer.step()
    assert isinstance(optimizer, torch.optim.AdamW) and weight.item() == pytest.approx(2.0 * (1 - 0.05), abs=1e-7)


def test_the_default_schedule_is_multistep():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    default = optimization.build_scheduler(optimizer, parameters.read_arguments([]))
    assert isinstance(default, torch.optim.lr_scheduler.MultiStepLR)


class SumObjective(nn.Module):
    part_names = ['loss']

    def forward(self, embeddings, labels, teacher_embeddings=None, epoch=0):
        loss = 0.1 * embeddings.float().sum()  # float32, as the project's criteria compute; no fp16 overflow
        return loss, {'loss': loss}


@pytest.mark.parametrize('clip,amp', [(0.0, 'off'), (0.01, 'off'), (0.01, 'fp16')])
def test_clip_grad_caps_the_norm_of_the_step(clip, amp):
    """Under fp16 the gradient is unscaled before clipping: the step is capped at the norm given, not at
    that norm divided by the loss scale (65536 at the first step)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = [(torch.zeros(2, dtype=torch.long), torch.randn(2, 4), torch.arange(2))]
    engine.train_one_epoch(model, SumObjective(), optimizer, batch, 0, device=torch.device('cpu'),
                           precision=Precision(amp, 'off', torch.device('cpu')), normalise=lambda x: x,
                           clip_grad=clip)
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())]).norm().item()
    assert step == pytest.approx(clip, rel=1e-5) if clip else step > 0.1


def test_data_parallel_conversion_keeps_the_activation_of_timms_batchnorm_act_layers():
    """On GPUs a BatchNormAct2d becomes timm's SyncBatchNormAct with the same activation and weights; over gloo
    on the CPU there is no such layer: a one-line error rather than a silently dropped activation."""
    import types
    from timm.layers import BatchNormAct2d
    from timm.layers.norm_act import SyncBatchNormAct
    from runtime import distributed
    norm = BatchNormAct2d(4, act_layer=nn.GELU)
    model = distributed.convert_batchnorm(nn.Sequential(norm), types.SimpleNamespace(
        enabled=True, device=torch.device('cuda')))
    assert type(model[0]) is SyncBatchNormAct and model[0].act is norm.act and model[0].weight is norm.weight
    with pytest.raises(distributed.DistributedError, match='_frozen'):
        distributed.convert_batchnorm(nn.Sequential(BatchNormAct2d(4)), types.SimpleNamespace(
            enabled=True, device=torch.device('cpu')))


def test_a_weights_file_of_another_model_is_a_one_line_error(tmp_path):
    from safetensors.torch import save_file
    path = str(tmp_path / 'convnext.safetensors')
    save_file(timm.create_model('test_convnext', pretrained=False).state_dict(), path)
    opt = options('--arch', 'timm/test_vit', '--input_size', '32', '--pretrained_weights', path)
    with pytest.raises(architectures.PretrainedWeightsUnavailable) as caught:
        architectures.select(opt.arch, opt)
    assert '--pretrained_weights' in str(caught.value) and '\n' not in str(caught.value)
