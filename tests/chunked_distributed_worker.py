"""Worker that tests/test_batch_chunk_distributed.py launches with torchrun (CPU, gloo, 2 ranks): the trainer's
epoch function with --batch_chunk on each rank's slice of the global batches, in float64. The single-process,
unchunked reference runs the same `steps` function in the test's own process.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 tests/chunked_distributed_worker.py OUT_DIR
"""
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in (ROOT, os.path.join(ROOT, 'tests')):
    if folder not in sys.path:
        sys.path.insert(0, folder)

import architectures  # noqa: E402
import batch_mining  # noqa: E402
import criteria  # noqa: E402
import parameters  # noqa: E402
from runtime import distributed  # noqa: E402
from training import engine  # noqa: E402
from runtime.precision import Precision  # noqa: E402

GLOBAL_BATCH, CLASSES, N_STEPS, CHUNK = 16, 4, 2, 3   # each rank: 8 images in chunks of 3, 3 and 2
ARCH = 'timm/test_resnet_frozen_normalize'
CASES = {'margin_lsd': ['--batch_mining', 'distance', '--kd_alpha', '50'],   # teacher, learned β
         'multisimilarity': ['--xbm_size', '40']}                              # cross-batch memory


def steps(loss, world, chunk):
    """N_STEPS steps of epoch 1 with a zero learning rate; the last step's gradients (backbone after the
    reduction, criterion), the losses and how often the backbone's gradients were all-reduced."""
    opt = parameters.read_arguments(['--loss', loss, '--arch', ARCH, '--not_pretrained', '--embed_dim', '8',
                                     '--bs', str(GLOBAL_BATCH), '--samples_per_class', '4', '--n_epochs', '4',
                                     '--input_size', '16'] + CASES[loss])
    torch.manual_seed(0)
    model = architectures.select(ARCH, opt).double()
    teacher = None
    if criteria.is_lsd(loss):
        torch.manual_seed(1)
        teacher = architectures.select(ARCH, opt).double()
    torch.manual_seed(2)
    miner = batch_mining.select(opt.batch_mining, opt, loss=loss) if criteria.requires_miner(loss) else None
    objective, groups = criteria.build_objective(loss, opt, CLASSES, miner)
    objective.to(torch.float64)
    optimizer = torch.optim.SGD([{'params': list(model.parameters())}] + groups, lr=0.0)
    generator = torch.Generator().manual_seed(5)
    loader = []
    for step in range(N_STEPS):
        labels = torch.arange(GLOBAL_BATCH) % CLASSES
        images = torch.randn(GLOBAL_BATCH, 3, 16, 16, generator=generator, dtype=torch.float64)
        rows = next(iter(distributed.RankSliceBatchSampler([list(range(GLOBAL_BATCH))], world)))
        loader.append((labels[rows], images[rows], torch.arange(GLOBAL_BATCH)[rows] + step * GLOBAL_BATCH))
    reductions = []
    original = distributed.all_reduce_gradients

    def counted(parameters_, world_):
        reductions.append(1)
        return original(parameters_, world_)
    distributed.all_reduce_gradients = counted
    try:
        torch.manual_seed(3)
        means, _ = engine.train_one_epoch(model, objective, optimizer, loader, 1, device=torch.device('cpu'),
                                          precision=Precision('off', 'off', torch.device('cpu')),
                                          normalise=lambda images: images, teacher=teacher, world=world,
                                          batch_chunk=chunk)
    finally:
        distributed.all_reduce_gradients = original
    grads = {'model.' + name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    grads.update({'criterion.' + name: p.grad.clone() for name, p in objective.named_parameters()
                  if p.grad is not None})
    memory = objective.memory.embeddings.clone() if objective.memory is not None else None
    return {'means': means, 'grads': grads, 'reductions': len(reductions), 'memory': memory}


def main(out_dir):
    world = distributed.init_from_environment('cpu')
    results = distributed.run_guarded(lambda: {loss: steps(loss, world, CHUNK) for loss in CASES}, world)
    torch.save(results, os.path.join(out_dir, 'rank{}.pt'.format(world.rank)))
    distributed.shutdown(world)


if __name__ == '__main__':
    main(sys.argv[1])
