"""Normalisation of a batch already on the device, for the fast pipeline's uint8 images.

uint8 -> float32 `(x / 255 - mean) / std` in the same operations as ToTensor + Normalize, so the same
uint8 pixels give bit for bit the reference's tensor; BN-Inception's variant then reverses the channels
(BGR, and its std of 1/255 gives the 0-255 scale). A float batch (reference pipeline, already
normalised in the workers) is returned unchanged, so the loop can call it on every batch.
"""
import torch


class DeviceNormaliser:

    def __init__(self, mean, std, reverse_channels):
        self.mean, self.std, self.reverse_channels = list(mean), list(std), reverse_channels
        self._constants = {}

    def constants(self, device):
        if device not in self._constants:
            self._constants[device] = (torch.tensor(self.mean, dtype=torch.float32, device=device)[:, None, None],
                                       torch.tensor(self.std, dtype=torch.float32, device=device)[:, None, None])
        return self._constants[device]

    def __call__(self, images):
        if images.is_floating_point():
            return images
        if images.dtype != torch.uint8:
            raise TypeError('device_normaliser expects uint8 or float images, got {}'.format(images.dtype))
        mean, std = self.constants(images.device)
        images = images.to(torch.float32).div_(255).sub_(mean).div_(std)
        return images.flip(-3) if self.reverse_channels else images


def device_normaliser(opt):
    """`normalise(images)` for opt.arch from the backbone's record: its mean/std (ImageNet's, CLIP's, ...), and
    BN-Inception's BGR channel order."""
    from datasets.image_transforms import backbone_config
    config = backbone_config(opt)
    return DeviceNormaliser(config['mean'], config['std'], reverse_channels=config['channel_order'] == 'BGR')
