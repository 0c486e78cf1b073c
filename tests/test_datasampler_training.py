"""The sampler hooks of the training loop end to end (storage creation, write-back, per-epoch precomputation): the
baseline trainer (main_original.py's loop) runs 2 epochs on a synthetic CUB tree with every sampler.

The backbone is replaced by a tiny network so that each run takes about a second on a CPU; the real backbones are
trained by tests/test_training.py and, with every sampler, by bench/samplers.py.
"""
import numpy as np
import pytest
import torch

import architectures
import datasampler
import synthetic_data
from datasampler import storage
from training import loop
from tiny_backbone import TinyBackbone

SAMPLERS = ['class_random', 'full_random', 'greedy_coreset', 'd2_coreset', 'disthist_batchmatch', 'fid_batchmatch']
BS, EMBED_DIM = 8, 16


@pytest.fixture(scope='module')
def cub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('cub')
    synthetic_data.make_cub200(str(root), n_classes=8, per_class=6)  # training: 4 classes × 6 = 24 images
    return str(root)


@pytest.fixture
def recorded(monkeypatch):
    """Replaces the backbone and records, in order, every storage hook the loop calls and every batch it draws."""
    events = []
    monkeypatch.setattr(architectures, 'select', lambda arch, opt: TinyBackbone(opt.embed_dim))
    for hook in ('create_storage', 'precompute_indices', 'full_storage_update', 'replace_storage_entries'):
        original = getattr(storage.StorageSampler, hook)

        def recording(self, *args, _hook=hook, _original=original, **kwargs):
            events.append((_hook,) + args)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(storage.StorageSampler, hook, recording)
    select = datasampler.select

    def recording_select(*args, **kwargs):
        sampler = select(*args, **kwargs)
        iterate = type(sampler).__iter__

        def recording_iter(self):
            for batch in iterate(self):
                events.append(('batch', list(batch)))
                yield batch
        monkeypatch.setattr(type(sampler), '__iter__', recording_iter)
        return sampler
    monkeypatch.setattr(datasampler, 'select', recording_select)
    return events


def train(root, save_path, sampler, *extra, lsd=False):
    argv = ['--dataset', 'cub200', '--source', root, '--save_path', str(save_path), '--savename', sampler,
            '--arch', 'resnet18_normalize', '--not_pretrained', '--n_epochs', '2', '--bs', str(BS),
            '--samples_per_class', '2', '--kernels', '0', '--embed_dim', str(EMBED_DIM), '--no_train_metrics', '--no_plots',
            '--evaluation_metrics', 'e_recall@1', '--data_sampler', sampler, '--lr', '0.01'] + list(extra)
    if not lsd:
        argv += ['--loss', 'triplet']
    return loop.main(argv, lsd_trainer=lsd)


def layout_holds(sampler, labels):
    """The batch layout of every sampler with spc = 2, as labels."""
    if sampler == 'full_random':
        return labels[-1] in labels[:-1]
    if 'coreset' in sampler:  # bs/spc anchors, then one same-class filler per anchor
        return (labels[:BS // 2] == labels[BS // 2:]).all()
    return (labels[0::2] == labels[1::2]).all()  # consecutive same-class pairs


@pytest.mark.parametrize('sampler', SAMPLERS)
def test_two_epochs_with_every_sampler(cub_root, tmp_path, recorded, sampler):
    run = train(cub_root, tmp_path, sampler)
    batches = [event[1] for event in recorded if event[0] == 'batch']
    assert len(run.sampler) == 24 // BS and len(batches) == 2 * len(run.sampler)
    assert all(len(batch) == BS and all(0 <= i < 24 for i in batch) for batch in batches)
    labels = np.array([label for _, label in run.dataloaders['training'].dataset.image_list])
    assert all(layout_holds(sampler, labels[batch]) for batch in batches)
    hooks = [event[0] for event in recorded if event[0] != 'batch']
    if not run.sampler.requires_storage:
        assert hooks == []
        return
    steps = ['replace_storage_entries'] * len(run.sampler)
    assert hooks == ['create_storage'] + (['precompute_indices'] + steps) * 2
    writes = [event for event in recorded if event[0] == 'replace_storage_entries']
    for (_, embeddings, indices), batch in zip(writes, batches):
        assert embeddings.shape == (BS, EMBED_DIM) and embeddings.device.type == 'cpu'
        assert not embeddings.requires_grad and indices.tolist() == batch
    _, embeddings, indices = writes[-1]
    last_write = {int(i): row for i, row in zip(indices, embeddings)}
    assert all(torch.equal(run.sampler.storage[i], row) for i, row in last_write.items())


def test_no_update_and_full_storage_update(cub_root, tmp_path, recorded):
    """--data_storage_no_update: no per-step write; --data_idx_full_prec: a full refresh before every epoch > 0."""
    run = train(cub_root, tmp_path, 'greedy_coreset', '--data_storage_no_update', '--data_idx_full_prec',
                '--data_mb_mom', '0.5')
    hooks = [event[0] for event in recorded if event[0] != 'batch']
    assert hooks == ['create_storage', 'precompute_indices', 'full_storage_update', 'precompute_indices']
    assert run.sampler.update_storage is False and run.sampler.delta_storage is not None


def test_lsd_trainer_with_a_storage_sampler(cub_root, tmp_path, recorded):
    run = train(cub_root, tmp_path, 'fid_batchmatch', '--loss', 'triplet_lsd', '--kd_alpha', '50', lsd=True)
    assert run.teacher is not None
    assert sum(event[0] == 'replace_storage_entries' for event in recorded) == 2 * len(run.sampler)


def test_unknown_sampler_is_a_one_line_startup_error(cub_root, tmp_path, recorded, capsys):
    with pytest.raises(SystemExit):
        train(cub_root, tmp_path, 'coreset')
    assert capsys.readouterr().err.splitlines()[-1] == 'error: Minibatch sampler coreset not available!'
