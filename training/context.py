"""What a run derives from the user's options once, at start-up, and passes to whoever needs it.

The options namespace is the user's and is never written to after parsing. Everything the reference
used to write onto it (the data folder, the run folder, the device, the number of training classes,
the epoch) lives here instead. The reference's on-disk records (`Parameter_Info.txt`, `hypa.pkl`, the
`opt` entry of checkpoints, the W&B config) still show those derived values, in the reference's order:
`recorded_options()` builds that namespace on demand, as a copy.
"""
import argparse
import dataclasses
import typing

import torch

from utilities import misc


@dataclasses.dataclass
class RunContext:
    opt: argparse.Namespace            # the user's options, as parsed (or as saved, when resuming)
    lsd_trainer: bool                  # main.py (True) or main_original.py (False)
    uses_lsd: bool                     # the LSD trainer with an `<loss>_lsd` criterion: a teacher exists
    data_folder: str                   # <--source_path>/<--dataset>; own data (csv, folder): --source_path
    results_folder: str                # <--save_path>/<--dataset>: the parent of run folders
    savename: str                      # --savename after the reference's group_plus_seed substitution
    device: torch.device
    world: typing.Any = None           # runtime.distributed.World (a single process when not under torchrun)
    run_folder: typing.Optional[str] = None     # set once the folder exists (or the resumed one)
    n_classes: typing.Optional[int] = None      # number of training classes (losses' class parameters, k-means)
    resume_state: typing.Optional[dict] = None
    wandb_run_id: typing.Optional[str] = None

    @property
    def embed_dim(self):
        return self.opt.embed_dim

    @property
    def is_main_process(self):
        return self.world is None or self.world.is_main

    def progress(self, total, description, unit='it'):
        """A progress display for one pass (--progress); silent in data-parallel helper processes."""
        from utilities.progress import Progress
        return Progress(self.opt.progress if self.is_main_process else 'off',
                        total, description, unit)

    def recorded_options(self, epoch=None):
        """The namespace as the reference saved it: the flags, then `pretrained`, `device`, `n_classes`,
        with the post-processed paths; checkpoints also carry `rho_spectrum_embed_dim` and `epoch`.
        The W&B key is redacted. A copy: changing it changes nothing in the run."""
        recorded = argparse.Namespace(**vars(self.opt))
        recorded.source_path = self.data_folder
        recorded.save_path = self.run_folder if self.run_folder is not None else self.results_folder
        recorded.savename = self.savename
        recorded.pretrained = not self.opt.not_pretrained
        recorded.device = self.device
        recorded.n_classes = self.n_classes
        if epoch is not None:
            recorded.rho_spectrum_embed_dim = self.opt.embed_dim
            recorded.epoch = epoch
        return misc.redacted_namespace(recorded)

    def metric_options(self):
        """What the metrics read besides their names: the engine choice, faiss threads, the number of
        k-means clusters (the number of *training* classes, as in the reference) and the embedding size."""
        options = argparse.Namespace(**vars(self.opt))
        options.n_classes = self.n_classes
        options.rho_spectrum_embed_dim = self.opt.embed_dim
        options.device = self.device
        return options
