"""Class-structured big batch, candidate generation and the choice of the cheapest candidate, shared by the
batch-matching samplers (distance histogram and FID)."""
import torch

from datasampler.base import SamplerConfigError
from datasampler.storage import StorageSampler


class BatchMatchSampler(StorageSampler):
    """Each batch: among `--data_batchmatch_ncomps` candidate batches drawn from a class-structured big batch, the one
    with the lowest `candidate_costs` (first on ties; a NaN cost never wins), mapped to dataset indices through that
    same big batch.
    Layout: bs/spc consecutive groups of spc same-class indices.
    """

    def __init__(self, opt, image_dict, image_list=None):
        super().__init__(opt, image_dict, image_list)
        self.big_draws = self.big_batch_size // self.samples_per_class
        if self.big_draws * self.samples_per_class < 2:
            raise SamplerConfigError(f'--data_batchmatch_bigbs {self.big_batch_size} gives a big batch of fewer than 2 '
                                     f'images with --samples_per_class {self.samples_per_class}')
        if self.batch_size < 2:
            raise SamplerConfigError(f'{self.name}: --bs must be at least 2 to compare batch statistics '
                                     f'(got {self.batch_size})')
        if self.n_candidates < 1:
            raise SamplerConfigError(f'--data_batchmatch_ncomps must be at least 1 (got {self.n_candidates})')

    def _bytes_per_call(self):
        big = self.big_draws * self.samples_per_class
        per_candidate = (self.classes_per_batch * big + self.batch_size * (self.batch_size + self.embed_dim)
                         + self.embed_dim ** 2)
        return 8 * (big * (big + self.embed_dim) + self.n_candidates * per_candidate)

    def _batch_chunk(self, n_calls):
        big_classes = self.classes.draw_classes((n_calls, self.big_draws))
        big_batch = self.classes.draw_members(big_classes, self.samples_per_class).flatten(1)
        embeddings = self._project(self.storage[big_batch.to(self.storage.device)])
        candidates = self.draw_candidates(big_classes).to(self.storage.device)
        costs = self.candidate_costs(embeddings, candidates)
        best = costs.nan_to_num(torch.inf).argmin(1)
        chosen = candidates[torch.arange(n_calls, device=candidates.device), best].cpu()
        return big_batch.gather(1, chosen)

    def draw_candidates(self, big_classes):
        """Candidate batches as big-batch positions (n_calls × ncomps × bs): bs/spc draws of a class uniform over the
        distinct classes of the big batch (with replacement), then spc distinct positions of that class.

        `big_classes` (n_calls × bigbs/spc) is the class of each big-batch draw; draw k fills positions
        k·spc … k·spc + spc − 1.
        """
        n_calls, n_draws = big_classes.shape
        spc = self.samples_per_class
        same = big_classes.unsqueeze(2) == big_classes.unsqueeze(1)
        first_occurrence = ~(same & torch.ones(n_draws, n_draws, dtype=torch.bool).tril(-1)).any(2)
        n_picks = self.n_candidates * self.classes_per_batch
        draws = torch.multinomial(first_occurrence.float(), n_picks, replacement=True)
        picked = big_classes.gather(1, draws).view(n_calls, self.n_candidates, self.classes_per_batch, 1)
        position_classes = big_classes.repeat_interleave(spc, dim=1)[:, None, None, :]
        keys = torch.rand(*picked.shape[:3], position_classes.shape[-1]).masked_fill(position_classes != picked, 2.0)
        return keys.topk(spc, dim=-1, largest=False).indices.flatten(2)

    def candidate_costs(self, embeddings, candidates):
        """Cost per candidate (n_calls × ncomps) given the big batch's `embeddings` (n_calls × bigbs × D)."""
        raise NotImplementedError
