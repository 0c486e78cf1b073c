"""Worker that tests/test_distributed_memory.py launches once with torchrun (CPU, gloo, 2 ranks), and the
training steps the test also runs in its own process as the single-process reference.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 tests/memory_distributed_worker.py OUT_DIR
"""
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import batch_mining  # noqa: E402
import criteria  # noqa: E402
import parameters  # noqa: E402
from runtime import distributed  # noqa: E402

# a global batch of 8 (4 classes × 2) per step, 4 per rank; a 12-slot memory wraps around in step 3
GLOBAL_BS, STEPS, IN_DIM, EMBED_DIM, MEMORY = 8, 4, 6, 5, 12
# loss → miner; Proxy-Anchor takes no memory and checks that its proxies get the full gradient on every rank
CASES = {'multisimilarity': None, 'contrastive_lsd': 'distance', 'proxyanchor_lsd': None}
DTYPE = torch.float64


def steps(loss, world):
    """STEPS Adam steps of a linear embedding (and the loss's own parameters) with a cross-batch memory where
    the loss takes one; the per-step losses, the final weights and the memory's contents."""
    memory_flags = [] if criteria.base_name(loss) == 'proxyanchor' else ['--xbm_size', str(MEMORY), '--xbm_start', '1']
    opt = parameters.read_arguments(['--loss', loss, '--embed_dim', str(EMBED_DIM), '--kd_alpha', '50',
                                     '--n_epochs', '4'] + memory_flags)
    torch.manual_seed(0)
    model = torch.nn.Linear(IN_DIM, EMBED_DIM).to(DTYPE)
    miner = batch_mining.select(CASES[loss], opt) if CASES[loss] else None
    objective, groups = criteria.build_objective(loss, opt, 4, miner)
    optimizer = torch.optim.Adam([{'params': model.parameters(), 'lr': 0.05}] + groups)
    generator = torch.Generator().manual_seed(1)
    rows = slice(world.rank * GLOBAL_BS // world.world_size, (world.rank + 1) * GLOBAL_BS // world.world_size)
    losses = []
    torch.manual_seed(3)   # the miners' stream, the same on every rank
    for _ in range(STEPS):
        inputs = torch.randn(GLOBAL_BS, IN_DIM, generator=generator, dtype=DTYPE)
        labels = torch.randperm(4, generator=generator).repeat_interleave(2)
        teacher = torch.nn.functional.normalize(torch.randn(GLOBAL_BS, EMBED_DIM, generator=generator,
                                                            dtype=DTYPE), dim=1)
        local = torch.nn.functional.normalize(model(inputs[rows]), dim=1)
        embeddings = distributed.gather_with_grad(local, world)
        gathered_labels = distributed.gather_plain(labels[rows], world)
        gathered_teacher = distributed.gather_plain(teacher[rows], world)
        loss_value, _ = objective(embeddings, gathered_labels,
                                  teacher_embeddings=gathered_teacher if objective.is_lsd else None, epoch=1)
        optimizer.zero_grad()
        loss_value.backward()
        distributed.all_reduce_gradients(model.parameters(), world)
        optimizer.step()
        losses.append(loss_value.detach())
    results = {'losses': torch.stack(losses), 'weight': model.weight.detach().clone(),
               'bias': model.bias.detach().clone(),
               'criterion': [p.detach().clone() for p in objective.parameters()]}
    if objective.memory is not None:
        memory_embeddings, memory_labels = objective.memory.contents()
        results.update(memory=memory_embeddings.clone(), memory_labels=memory_labels.clone(),
                       filled=len(objective.memory))
    return results


if __name__ == '__main__':
    world = distributed.init_from_environment('cpu')
    results = {loss: steps(loss, world) for loss in CASES}
    torch.save(results, os.path.join(sys.argv[1], 'rank{}.pt'.format(world.rank)))
    distributed.shutdown(world)
