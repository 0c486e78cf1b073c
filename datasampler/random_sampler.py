"""`full_random`: bs−1 class-balanced single draws plus one same-class partner."""
import torch

from datasampler.base import BaseBatchSampler, SamplerConfigError

REQUIRES_STORAGE = False


class Sampler(BaseBatchSampler):
    """Class uniform then image uniform (not uniform over images, as in the reference); the last slot guarantees one
    repeated label."""

    name = 'random_sampler'
    requires_storage = REQUIRES_STORAGE

    def __init__(self, opt, image_dict, image_list=None):
        super().__init__(opt, image_dict, image_list)
        if self.batch_size < 2:
            raise SamplerConfigError('--bs must be at least 2 for the full_random sampler '
                                     '(its last slot pairs with an earlier one)')

    def __iter__(self):
        n_batches, n_single = self.sampler_length, self.batch_size - 1
        singles = self.classes.draw_members(self.classes.draw_classes((n_batches, n_single)), 1).squeeze(-1)
        partner_of = singles.gather(1, torch.randint(n_single, (n_batches, 1)))
        partner = self.classes.draw_members(self.classes.class_of[partner_of], 1).squeeze(-1)
        yield from torch.cat([singles, partner], 1).tolist()
