"""`evaluate.py --export_onnx`: onnxruntime gives the PyTorch embeddings within 1e-4 (a reference backbone and
a timm model, batch sizes other than the exported example's), and the metadata's preprocessing, applied
with PIL and numpy alone, reproduces the framework's evaluation tensors."""
import json
import os

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

import architectures
import parameters
from datasets import write_digits
from evaluation import checkpoint_eval, onnx_export
from evaluation.preprocessing import describe, evaluation_pipeline


def session(model_bytes):
    return onnxruntime.InferenceSession(model_bytes, providers=['CPUExecutionProvider'])


def torch_embeddings(network, images):
    with torch.no_grad():
        return network(images)[0].numpy()


@pytest.mark.parametrize('arch, size', [('resnet18_normalize', 64), ('timm/test_vit_normalize', 32),
                                        ('resnet18', 64)])
def test_onnxruntime_equals_pytorch(arch, size):
    extra = ['--input_size', str(size)] if arch.startswith('timm/') else []
    opt = parameters.read_arguments(['--arch', arch, '--not_pretrained', '--embed_dim', '16', *extra])
    torch.manual_seed(0)
    network = architectures.select(arch, opt).eval()
    model_bytes = onnx_export.onnx_bytes(network, (3, size, size))
    images = torch.randn(5, 3, size, size)
    got = session(model_bytes).run(None, {'images': images.numpy()})[0]
    expected = torch_embeddings(network, images)
    assert got.shape == (5, 16)
    assert np.abs(got - expected).max() < 1e-4
    one = session(model_bytes).run(None, {'images': images[:1].numpy()})[0]
    assert np.abs(one - expected[:1]).max() < 1e-4
    norms = np.linalg.norm(got, axis=1)
    assert np.allclose(norms, 1, atol=1e-5) == ('normalize' in arch)   # the normalisation is in the graph


def preprocess_from_metadata(path, facts):
    """The metadata's preprocessing with PIL and numpy only (what a user of the ONNX file writes)."""
    resample = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC, 'nearest': Image.NEAREST}[facts['interpolation']]
    with Image.open(path) as image:
        image = image.convert('RGB')
    if facts['resize_mode'] == 'height_width':
        image = image.resize((facts['resize'][1], facts['resize'][0]), resample)
    else:
        width, height = image.size
        short = facts['resize']
        size = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
        image = image.resize(size, resample)
    if facts['crop']:
        height, width = facts['crop']
        left, top = int(round((image.size[0] - width) / 2)), int(round((image.size[1] - height) / 2))
        image = image.crop((left, top, left + width, top + height))
    x = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255
    x = (x - np.asarray(facts['mean'], dtype=np.float32)[:, None, None]) / np.asarray(facts['std'],
                                                                                      dtype=np.float32)[:, None, None]
    return x[::-1].copy() if facts['channel_order'] == 'BGR' else x


def test_evaluate_exports_the_run_with_its_preprocessing(finished_run, tmp_path):
    target = str(tmp_path / 'model.onnx')
    result = checkpoint_eval.main(['--checkpoint', finished_run, '--export_onnx', target])
    model = onnx.load(target)
    facts = {entry.key: entry.value for entry in model.metadata_props}
    preprocessing = json.loads(facts['preprocessing'])
    assert preprocessing == result['preprocessing']
    for key in ('input_size', 'resize', 'crop', 'interpolation', 'mean', 'std', 'channel_order', 'pixel_scale'):
        value = preprocessing[key]   # text facts are stored as they are, the others as JSON
        assert (facts[key] if isinstance(value, str) else json.loads(facts[key])) == value
    assert facts['embedding'] == 'normalized' and json.loads(facts['embed_dim']) == 8
    assert facts['arch'] == 'timm/test_resnet_normalize' and len(facts['fingerprint']) == 64
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == preprocessing['input_size']

    images = write_digits.write(str(tmp_path / 'digits'), False, 1)
    paths = sorted(os.path.join(images, d, f) for d in os.listdir(images) for f in os.listdir(os.path.join(images, d)))
    checkpoint = checkpoint_eval.load_checkpoint(checkpoint_eval.resolve_checkpoint(finished_run))
    cli = type('cli', (), {'source_path': None, 'evaluation_metrics': None, 'evaluate_on_gpu': False, 'kernels': 0})()
    opt = checkpoint_eval.evaluation_options(checkpoint['opt'], cli)
    network = checkpoint_eval.build_network(opt, checkpoint['state_dict'], torch.device('cpu'))
    _, _, transform = evaluation_pipeline(opt)(opt, True)
    from datasets.decoding import load_pil_rgb
    framework = torch.stack([transform(load_pil_rgb(path)) for path in paths])
    by_metadata = np.stack([preprocess_from_metadata(path, preprocessing) for path in paths])
    assert np.abs(by_metadata - framework.numpy()).max() < 1e-5
    got = session(model.SerializeToString()).run(None, {'images': by_metadata})[0]
    assert np.abs(got - torch_embeddings(network, framework)).max() < 1e-4


def test_described_preprocessing_of_the_reference_backbones():
    bgr = describe(parameters.read_arguments(['--arch', 'bninception_normalize']))
    assert bgr['channel_order'] == 'BGR' and bgr['pixel_scale'] == 255.0 and bgr['crop'] == [224, 224]
    resnet = describe(parameters.read_arguments(['--arch', 'resnet50_frozen']))
    assert (resnet['resize'], resnet['resize_mode'], resnet['interpolation'], resnet['output']) == \
        (256, 'shorter_side', 'bilinear', 'raw')
    digits = describe(parameters.read_arguments(['--arch', 'resnet18_normalize', '--dataset', 'digits']))
    assert digits['resize'] == [32, 32] and digits['crop'] is None and digits['input_size'] == [3, 32, 32]


def test_export_into_a_missing_folder_is_one_line(finished_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        checkpoint_eval.main(['--checkpoint', finished_run, '--export_onnx', str(tmp_path / 'no' / 'm.onnx')])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == 'error: --export_onnx {}: the folder {} does not exist'.format(
        tmp_path / 'no' / 'm.onnx', tmp_path / 'no')
