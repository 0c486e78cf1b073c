"""The evaluation preprocessing of a trained model, as the data pipeline applies it and as an exported
model's users must repeat it.

`evaluation_pipeline(opt)` is the pipeline builder of the data the model was evaluated on (the embedded
digits' 32 px resize, otherwise the benchmarks' resize and centre crop); `describe(opt)` reads the steps
off that very pipeline (resize, crop, interpolation, mean, std, channel order) and adds the backbone's
record (`architectures.backbone_config`: pixel scale, whether the embedding is L2-normalised), so the
description cannot drift from what the framework does.
"""
from torchvision import transforms


def evaluation_pipeline(opt):
    from datasets.image_transforms import benchmark_pipeline, digits_pipeline
    return digits_pipeline if 'digits' in opt.dataset else benchmark_pipeline


def describe(opt):
    """{input_size: [3, H, W], resize, resize_mode, crop, interpolation, mean, std, channel_order,
    pixel_scale, output} of the model's evaluation transform."""
    import architectures
    _, _, pipeline = evaluation_pipeline(opt)(opt, True)
    record = architectures.backbone_config(opt.arch, opt)
    described = {'resize': None, 'resize_mode': None, 'crop': None, 'interpolation': None, 'channel_order': 'RGB'}
    for step in pipeline.transforms:
        if isinstance(step, transforms.Resize):
            size = step.size
            exact = isinstance(size, (list, tuple)) and len(size) == 2
            described['resize'] = list(size) if exact else int(size[0] if isinstance(size, (list, tuple)) else size)
            described['resize_mode'] = 'height_width' if exact else 'shorter_side'
            described['interpolation'] = step.interpolation.value
        elif isinstance(step, transforms.CenterCrop):
            described['crop'] = [int(v) for v in step.size]
        elif isinstance(step, transforms.Normalize):
            described['mean'] = [float(v) for v in step.mean]
            described['std'] = [float(v) for v in step.std]
        elif type(step).__name__ == 'ReverseChannels':
            described['channel_order'] = 'BGR'
    height, width = described['crop'] or (described['resize'] if described['resize_mode'] == 'height_width'
                                          else [described['resize']] * 2)
    described.update({'input_size': [3, int(height), int(width)], 'pixel_scale': float(record['pixel_scale']),
                      'output': record['output']})
    return described
