"""Per-call time of every batch miner at the paper's batch shape (bs 112, 56 classes x 2, D 128),
and of the distance miner against a per-anchor numpy loop in the reference's style.

    python3 bench/bench_batch_mining.py [--device cuda] [--bs 112] [--dim 128] [--calls 200]
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import batch_mining  # noqa: E402
import parameters  # noqa: E402


def per_anchor_distance_miner(batch, labels, lower_cutoff=0.5):
    """The reference's loop: one ISD row copied to the CPU and one np.random.choice per anchor."""
    labels = labels.cpu().numpy()
    bs, dim = batch.shape
    x = batch.detach()
    gram = x @ x.T
    norms = gram.diagonal()
    distances = (norms[:, None] + norms[None, :] - 2 * gram).clamp(min=0).sqrt().clamp(min=lower_cutoff)
    triplets = []
    for i in range(bs):
        same = labels == labels[i]
        row = distances[i]
        log_q = (2.0 - dim) * torch.log(row) - (float(dim - 3) / 2) * torch.log(1.0 - 0.25 * row.pow(2))
        log_q[np.where(same)[0]] = 0
        q = torch.exp(log_q - torch.max(log_q))
        q[np.where(same)[0]] = 0
        q = (q / q.sum()).cpu().numpy().astype(np.float64)
        positives = np.where(same)[0]
        positives = positives[positives != i] if len(positives) > 1 else positives
        triplets.append([i, np.random.choice(positives), np.random.choice(bs, p=q / q.sum())])
    return triplets


def seconds_per_call(function, calls, device):
    function()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--bs', type=int, default=112)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--calls', type=int, default=200)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    batch = torch.nn.functional.normalize(torch.randn(args.bs, args.dim, device=device), dim=1)
    labels = torch.arange(args.bs // 2).repeat_interleave(2)
    opt = parameters.read_arguments(['--loss', 'triplet'])
    print('device {}, bs {}, D {}, torch threads {}'.format(device, args.bs, args.dim, torch.get_num_threads()))
    for key in batch_mining.BATCHMINING_METHODS:
        miner = batch_mining.select(key, opt)
        print('{:16s} {:8.3f} ms'.format(key, 1e3 * seconds_per_call(lambda: miner(batch, labels), args.calls, device)))
    reference = seconds_per_call(lambda: per_anchor_distance_miner(batch, labels), max(args.calls // 10, 1), device)
    print('{:16s} {:8.3f} ms'.format('distance (loop)', 1e3 * reference))


if __name__ == '__main__':
    main()
