"""Exact against approximate search (utilities.search_index) on a generated collection.

    python bench/search_index.py [--n 100000] [--dim 128] [--queries 1000] [--k 10] [--threads 0]

The collection is unit vectors around 1000 random centres (clustered, like embeddings of a trained
model, where uniform random vectors would make every neighbour equally far); the queries are drawn the
same way but are not in the collection. Prints, per kind and search setting (ivf: nprobe, hnsw:
efSearch), the build time, the search time of the query set and its recall@k against exact search (the
measure `python -m utilities.search build --approximate ...` prints).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utilities.search_index import new_index  # noqa: E402


def collection(n, dim, n_centres=1000, spread=0.35, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(n_centres, dim).astype(np.float32)
    vectors = centres[rng.randint(0, n_centres, n)] + spread * rng.randn(n, dim).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=100000)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--queries', type=int, default=1000)
    parser.add_argument('--k', type=int, default=10)
    parser.add_argument('--threads', type=int, default=0, help='faiss threads (0: faiss default)')
    args = parser.parse_args(argv)
    import faiss
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    vectors = collection(args.n, args.dim)
    queries = collection(args.queries, args.dim, seed=1)
    print('{} vectors of {} dimensions, {} queries (not in the collection), k = {}, faiss threads {}'.format(
        args.n, args.dim, args.queries, args.k, faiss.omp_get_max_threads()))
    truth = None
    for kind, setting, values in (('exact', None, (None,)), ('ivf', 'nprobe', (16, 64)),
                                  ('hnsw', 'efSearch', (128, 512))):
        start = time.perf_counter()
        index = new_index(kind, vectors)
        built = time.perf_counter() - start
        for value in values:
            if setting == 'nprobe':
                index.nprobe = value
            elif setting == 'efSearch':
                index.hnsw.efSearch = value
            start = time.perf_counter()
            _, found = index.search(queries, args.k)
            searched = time.perf_counter() - start
            if truth is None:
                truth = found
            recall = np.mean([len(set(t) & set(f)) / args.k for t, f in zip(truth, found)])
            print('{:>5} {:>14}: build {:7.2f} s | search {:7.3f} s ({:8.1f} queries/s) | recall@{} {:.4f}'.format(
                kind, '' if setting is None else '{} {}'.format(setting, value), built, searched,
                args.queries / searched, args.k, recall))


if __name__ == '__main__':
    main()
