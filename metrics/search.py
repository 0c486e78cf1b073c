"""Exact nearest-neighbour search engines: faiss on the CPU, faiss on the GPU, torch on any device.

Every engine returns, per query, the indices of its k nearest base rows (squared L2, or largest inner
product), ranked by distance with ties broken by **ascending sample index** (faiss-cpu's own L2 order,
tested; faiss-gpu keeps its own order among exact ties), and pads with -1 when k exceeds the number
of base rows, as faiss does. With `distances=True` an L2 search also returns the squared distances
it ranked by (padding: +inf or faiss's max float). Work is bounded by WORKSPACE_BYTES per query
chunk, so memory does not grow with the number of queries.
"""
import sys

import faiss
import numpy as np
import torch

from metrics.precision import forced_tf32, full_float32_matmul

WORKSPACE_BYTES = 1 << 26  # 64 MiB of temporaries per chunk of queries
GPU_MAX_K = 2048  # faiss GPU brute-force k cap (1024 before faiss 1.7.3: those builds fall back too late)

_gpu_resources = None


def _gpu_resources_once():
    """One faiss GPU resource object for the whole process: each one reserves its own scratch memory.
    torch's cached blocks are released first, so that faiss finds the GPU memory they held."""
    global _gpu_resources
    if _gpu_resources is None:
        torch.cuda.empty_cache()
        _gpu_resources = faiss.StandardGpuResources()
    return _gpu_resources


def faiss_has_gpu():
    return hasattr(faiss, 'StandardGpuResources') and faiss.get_num_gpus() > 0


def as_numpy(tensor):
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


class FaissEngine:
    """faiss IndexFlatL2 / IndexFlatIP, on the GPU when `gpu` (searches above GPU_MAX_K run on the CPU)."""

    def __init__(self, gpu=False):
        self.gpu = gpu
        self.device = torch.device('cuda') if gpu else torch.device('cpu')
        self.name = 'faiss-gpu' if gpu else 'faiss-cpu'

    def float32_distances(self):
        """Whether returned L2 distances are float32-accurate (faiss-gpu's GEMM settings are its own)."""
        return not self.gpu

    def rows_per_chunk(self, n_base, k):
        rows = max(1, WORKSPACE_BYTES // (12 * k))
        return rows - rows % 4096 if rows > 4096 else rows  # faiss works in blocks of 4096 queries

    def prepare(self, base, inner_product=False):
        """Index `base` once; return search(queries, k) -> LongTensor on the engine's device."""
        base_np = as_numpy(base)
        dim = base_np.shape[1]
        cpu_index = None

        def build_cpu():
            index = faiss.IndexFlatIP(dim) if inner_product else faiss.IndexFlatL2(dim)
            index.add(base_np)
            return index

        if self.gpu:
            cls = faiss.GpuIndexFlatIP if inner_product else faiss.GpuIndexFlatL2
            resources = _gpu_resources_once()
            torch.cuda.empty_cache()  # the index and its searches allocate outside torch's cache
            config = faiss.GpuIndexFlatConfig()
            config.device = torch.cuda.current_device()  # the run's GPU (cuda:N), not always visible device 0
            gpu_index = cls(resources, dim, config)
            gpu_index.add(base_np)
        if inner_product:
            exact_engine = TorchEngine('cpu')
            exact = exact_engine.prepare(torch.from_numpy(base_np), inner_product=True)

        def search(queries, k, distances=False):
            nonlocal cpu_index
            k = int(k)
            if self.gpu and k + inner_product <= GPU_MAX_K:
                index = gpu_index
            else:
                if cpu_index is None:
                    cpu_index = build_cpu()
                index = cpu_index
            queries = as_numpy(queries)
            if not inner_product:
                found_distances, idx = index.search(queries, k)
                idx = torch.from_numpy(idx).to(self.device)
                return (idx, torch.from_numpy(found_distances).to(self.device)) if distances else idx
            if distances:
                raise NotImplementedError('distances are returned by L2 searches only')
            # faiss keeps and orders equal inner products inconsistently: a row with equal scores among
            # its k+1 best is recomputed exactly (torch, index-ordered ties)
            scores, idx = index.search(queries, k + 1)
            tied = ((scores[:, 1:] == scores[:, :-1]) & (idx[:, 1:] >= 0)).any(axis=1)
            idx = torch.from_numpy(idx[:, :k])
            tied_rows = np.flatnonzero(tied)
            step = exact_engine.rows_per_chunk(len(base_np), k)
            for start in range(0, len(tied_rows), step):
                rows = tied_rows[start:start + step]
                idx[torch.from_numpy(rows)] = exact(torch.from_numpy(queries[rows]), k)
            return idx.to(self.device)

        return search


class TorchEngine:
    """Chunked matmul + exact top-k with index-ordered ties; the GPU path without faiss-gpu, any device."""

    def __init__(self, device='cpu'):
        self.device = torch.device(device)
        self.name = 'torch-{}'.format(self.device.type)

    def float32_distances(self):
        """Whether returned L2 distances are float32-accurate: not where cuBLAS is forced to TF32."""
        return not forced_tf32(self.device)

    def rows_per_chunk(self, n_base, k):
        # per query row: distances (4 B), three masks (3 B) and an int64 cumulative count (8 B) per base row
        return max(1, WORKSPACE_BYTES // (15 * max(n_base, 1)))

    def prepare(self, base, inner_product=False):
        base = base.to(self.device, torch.float32)
        base_sqnorm = (base * base).sum(1)

        def search(queries, k, distances=False):
            if distances and inner_product:
                raise NotImplementedError('distances are returned by L2 searches only')
            queries = queries.to(self.device, torch.float32)
            with full_float32_matmul(self.device):
                if inner_product:
                    dist = -(queries @ base.T)
                else:
                    dist = torch.addmm(base_sqnorm[None, :], queries, base.T, alpha=-2)
            kept = min(int(k), base.shape[0])
            idx = smallest_k_index_ordered(dist, kept)
            if kept < k:
                pad = torch.full((len(idx), int(k) - kept), -1, dtype=torch.long, device=self.device)
                idx = torch.cat([idx, pad], dim=1)
            if not distances:
                return idx
            # faiss's formula: |q|^2 + (|b|^2 - 2qb), clamped at 0; +inf for the padding
            ranked = (dist.gather(1, idx.clamp_min(0)) + (queries * queries).sum(1, keepdim=True)).clamp_min(0)
            return idx, ranked.masked_fill(idx < 0, float('inf'))

        return search


def smallest_k_index_ordered(dist, k):
    """Column indices of the k smallest entries per row; equal values ranked (and cut) by ascending index."""
    if k == 0:
        return torch.empty((dist.shape[0], 0), dtype=torch.long, device=dist.device)
    kth = torch.topk(dist, k, dim=1, largest=False, sorted=False).values.amax(dim=1, keepdim=True)
    below = dist < kth
    at_kth = dist == kth
    room = k - below.sum(dim=1, keepdim=True)
    chosen = below | (at_kth & (at_kth.cumsum(dim=1) <= room))
    idx = chosen.nonzero()[:, 1].view(-1, k)
    order = torch.sort(dist.gather(1, idx), dim=1, stable=True).indices
    return idx.gather(1, order)


def select_engine(opt):
    """faiss on the CPU; with --evaluate_on_gpu faiss-gpu, else torch on CUDA, else a notice and the CPU."""
    if getattr(opt, 'evaluate_on_gpu', False):
        if torch.cuda.is_available():
            return FaissEngine(gpu=True) if faiss_has_gpu() else TorchEngine('cuda')
        print('Notice: --evaluate_on_gpu without a CUDA device: metrics are computed on the CPU.',
              file=sys.stderr)
    return FaissEngine(gpu=False)
