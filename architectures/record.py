"""A backbone's facts in one record, shaped like timm's `pretrained_cfg`: what its input must look like and
what it returns. Both data pipelines, the losses and start-up checks read this record instead of testing
`--arch` names, and an export can embed the same preprocessing.

Preprocessing the record describes (the data pipelines' order of operations): decode RGB, resize the
shorter side to floor(H / crop_pct) with `interpolation` and centre-crop `input_size` for evaluation; scale
to [0, 1] (ToTensor), `(x - mean) / std` per channel in RGB order, then reverse the channels when
`channel_order` is 'BGR'. `mean` and `std` are thus on the [0, 1] scale of ToTensor, as in timm;
`pixel_scale` records the range the network then sees (BN-Inception's std of 1/255 gives the Caffe 0-255
scale), it is not a further step.

Keys:
  mean, std            3 floats each (RGB order, [0, 1] scale)
  input_size           (3, H, W) of the evaluation crop (`--input_size` applied for timm models)
  crop_pct             evaluation resize = floor(H / crop_pct) (256 for the reference four)
  interpolation        'bilinear', 'bicubic' or 'nearest'
  channel_order        'RGB' or 'BGR' (after normalisation)
  pixel_scale          1.0 (unit-variance inputs) or 255.0 (BN-Inception's 0-255 inputs)
  output               'normalized' (the network L2-normalises its embedding) or 'raw'
  fixed_input_size     the network only takes `input_size` (timm's own flag; False for the reference CNNs)
  sized_by_config      True: every pipeline feeds `input_size` under every `--augmentation` and for the
                       embedded digits; False: the reference's sizes (`big` trains at 256 px, digits 32 px)
  accepts_recipe_flags --input_size, --no_head, --freeze_patch_embed, --grad_checkpointing apply
  npair_shrink_batch   the N-pair loss divides the embeddings by 4 (the reference's guard against exp
                       overflow for BN-Inception's larger embeddings)
"""
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
REFERENCE_CROP, REFERENCE_RESIZE = 224, 256

KEYS = ('mean', 'std', 'input_size', 'crop_pct', 'interpolation', 'channel_order', 'pixel_scale', 'output',
        'fixed_input_size', 'sized_by_config', 'accepts_recipe_flags', 'npair_shrink_batch')


def reference_config(arch, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop=REFERENCE_CROP, channel_order='RGB',
                     pixel_scale=1.0, npair_shrink_batch=False):
    """The record of one of the reference's four backbones: bilinear resize to 256 then a centre crop; the
    `normalize` token anywhere in the name L2-normalises the embedding."""
    return {'mean': tuple(float(value) for value in mean), 'std': tuple(float(value) for value in std),
            'input_size': (3, crop, crop), 'crop_pct': crop / REFERENCE_RESIZE, 'interpolation': 'bilinear',
            'channel_order': channel_order, 'pixel_scale': float(pixel_scale),
            'output': 'normalized' if 'normalize' in arch else 'raw', 'fixed_input_size': False,
            'sized_by_config': False, 'accepts_recipe_flags': False, 'npair_shrink_batch': npair_shrink_batch}


def eval_resize(config):
    """The shorter side before the evaluation centre crop, as timm's evaluation transform computes it."""
    import math
    return int(math.floor(config['input_size'][-1] / config['crop_pct']))
