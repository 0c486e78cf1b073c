"""Forward + backward of every loss with its default miner, vectorised (criteria/, batch_mining/) against the
reference-style per-anchor loops (bench/loop_criteria.py's miners, tests/criteria_reference.py's losses and
distillation block), with and without LSD.

Batch: bs 112 = 56 classes × 2, embed_dim 128, L2-normalised float32 rows on the CPU; LSD at epoch 5 of 150
(non-zero distillation weight, so the teacher term and its gradient are computed). The two implementations
of each row are timed alternately in this one run; the table gives the best and the median milliseconds
of each, and the speed-up of the best times (the best is the robust figure on a shared, oversubscribed CPU).
For the miner-free losses and the deterministic lifted miner it also prints the largest difference of the
loss values between the two implementations (a sanity check; tests/test_criteria_*.py are the real ones).

    python3 bench/loss_step.py [--repeats 9] [--losses triplet margin ...] [--threads 1]

`--at_scale` times instead the two large settings of the field's strongest baselines: Proxy-Anchor at SOP's
11 318 classes (bs 180, 512-d, against the authors' code shape) and pair losses with a full cross-batch
memory of 8 192 × 512 (bs 112, against the same loss without memory), each with and without LSD:

    python3 bench/loss_step.py --at_scale [--repeats 5] [--device cpu|cuda]
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import batch_mining  # noqa: E402
import criteria  # noqa: E402
import loop_criteria  # noqa: E402
import parameters  # noqa: E402

DEFAULT_MINER = {'npair': 'npair', 'angular': 'npair', 'lifted': 'lifted'}
DETERMINISTIC = {'proxynca', 'multisimilarity', 'histogram', 'softmax', 'softtriplet', 'arcface', 'ap_loss',
                 'lifted'}
EPOCH = 5


N_CLASSES = 56


def make_opt(loss):
    return parameters.read_arguments(['--loss', loss, '--bs', '112', '--samples_per_class', '2',
                                      '--embed_dim', '128'])


def step_vectorised(objective, embeddings, teacher, labels, use_lsd):
    batch = embeddings.clone().requires_grad_()
    if use_lsd:
        loss, _ = objective(batch, labels, teacher_embeddings=teacher, epoch=EPOCH)
    else:
        loss, _ = objective(batch, labels)
    loss.backward()
    return loss.item()


def step_loop(loss_name, miner, opt, state, embeddings, teacher, labels, use_lsd, weight):
    batch = embeddings.clone().requires_grad_()
    mined = miner(batch, labels) if miner is not None else None
    loss = loop_criteria.LOSSES[loss_name](batch, labels, mined, opt, state)
    if use_lsd:
        loss = loss + weight * loop_criteria.distillation(batch, teacher, labels, opt.kd_tau, opt.kd_beta)
    loss.backward()
    return loss.item()


def timed(function):
    start = time.perf_counter()
    value = function()
    return (time.perf_counter() - start) * 1000, value


SOP_CLASSES, PROXYANCHOR_BS, XBM_SIZE, SCALE_DIM = 11318, 180, 8192, 512


def timed_steps(function, repeats, device):
    """(best ms, median ms) of `repeats` calls after one warm-up call; synchronised on CUDA."""
    function()
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def unit_rows(n, generator, device):
    return torch.nn.functional.normalize(torch.randn(n, SCALE_DIM, generator=generator), dim=1).to(device)


def at_scale(repeats, device):
    """Step times (forward + backward) of Proxy-Anchor at 11 318 classes and of XBM with a full memory."""
    from criteria_reference_modern import shaped_proxyanchor
    generator = torch.Generator().manual_seed(0)
    print('at scale: {}-d float32 on {}, torch {} with {} threads; ms best / median of {} steps'.format(
        SCALE_DIM, device, torch.__version__, torch.get_num_threads(), repeats))
    header = '{:<34} {:>20} {:>20} {:>8}'.format('setting', 'ms', 'baseline ms', 'ratio')
    print(header)
    print('-' * len(header))

    labels = torch.randint(SOP_CLASSES, (PROXYANCHOR_BS // 2,), generator=generator).repeat_interleave(2)
    embeddings, teacher = unit_rows(PROXYANCHOR_BS, generator, device), unit_rows(PROXYANCHOR_BS, generator, device)
    labels = labels.to(device)
    for key in ('proxyanchor', 'proxyanchor_lsd'):
        opt = parameters.read_arguments(['--loss', key, '--embed_dim', str(SCALE_DIM), '--kd_alpha', '50'])
        objective, _ = criteria.build_objective(key, opt, SOP_CLASSES)
        objective.to(device)
        weight = objective.distillation_weight(EPOCH)

        def vectorised():
            batch = embeddings.clone().requires_grad_()
            loss, _ = objective(batch, labels, teacher_embeddings=teacher if objective.is_lsd else None,
                                epoch=EPOCH)
            loss.backward()

        def authors_shape():
            batch = embeddings.clone().requires_grad_()
            loss = shaped_proxyanchor(batch, labels, None, opt, {'proxies': objective.ranking.proxies})
            if objective.is_lsd:
                loss = loss + weight * objective.distillation(batch, teacher, labels)
            loss.backward()
        best, median = timed_steps(vectorised, repeats, device)
        base_best, base_median = timed_steps(authors_shape, repeats, device)
        print('{:<34} {:>9.2f} / {:>8.2f} {:>9.2f} / {:>8.2f} {:>7.2f}x   (baseline: the authors\' code shape; '
              'ratio = speed-up, baseline ms / ms)'
              .format('{} bs {} C {}'.format(key, PROXYANCHOR_BS, SOP_CLASSES), best, median, base_best,
                      base_median, base_best / best), flush=True)

    bs = 112
    labels = torch.arange(bs // 2).repeat_interleave(2).to(device)
    embeddings, teacher = unit_rows(bs, generator, device), unit_rows(bs, generator, device)
    memory_embeddings = unit_rows(XBM_SIZE, generator, device)
    memory_labels = torch.randint(SOP_CLASSES, (XBM_SIZE,), generator=generator).to(device)
    for key, miner_key in (('multisimilarity', None), ('multisimilarity_lsd', None),
                           ('contrastive', 'distance'), ('contrastive_lsd', 'distance'),
                           ('triplet', 'distance'), ('margin', 'distance')):
        opt = parameters.read_arguments(['--loss', key, '--embed_dim', str(SCALE_DIM), '--kd_alpha', '50',
                                         '--xbm_size', str(XBM_SIZE)])
        miner = batch_mining.select(miner_key, opt) if miner_key else None
        objective, _ = criteria.build_objective(key, opt, SOP_CLASSES, miner)
        objective.to(device)
        plain_opt = parameters.read_arguments(['--loss', key, '--embed_dim', str(SCALE_DIM), '--kd_alpha', '50'])
        plain, _ = criteria.build_objective(key, plain_opt, SOP_CLASSES, miner)
        plain.to(device)
        memory = objective.memory
        memory.enqueue(memory_embeddings, memory_labels)   # full: every step pairs with 8 192 entries

        def step(which):
            batch = embeddings.clone().requires_grad_()
            if which is objective:   # keep the memory full and unchanged between steps
                memory.next_slot, memory.iteration = 0, memory.start
            loss, _ = which(batch, labels, teacher_embeddings=teacher if which.is_lsd else None, epoch=EPOCH)
            if loss.requires_grad:
                loss.backward()
        best, median = timed_steps(lambda: step(objective), repeats, device)
        memory.enqueue(memory_embeddings, memory_labels)
        base_best, base_median = timed_steps(lambda: step(plain), repeats, device)
        print('{:<34} {:>9.2f} / {:>8.2f} {:>9.2f} / {:>8.2f} {:>7.2f}x   (baseline: no memory; ratio = the '
              'memory\'s cost, ms / baseline ms)'.format(
                  '{} {} + XBM {}x{}'.format(key, miner_key or '', XBM_SIZE, SCALE_DIM), best, median, base_best,
                  base_median, best / base_best), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=9)
    parser.add_argument('--losses', nargs='+', default=criteria.BASE_LOSS_NAMES)
    parser.add_argument('--threads', type=int, default=1,
                        help='torch intra-op threads; 1 by default because a shared, oversubscribed CPU makes '
                             'multi-threaded timings erratic (0: leave torch\'s default)')
    parser.add_argument('--at_scale', action='store_true',
                        help='time Proxy-Anchor at 11 318 classes and XBM with an 8192 x 512 memory instead')
    parser.add_argument('--device', default='cpu', help='device of the --at_scale timings')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    if args.at_scale:
        return at_scale(args.repeats, torch.device(args.device))

    labels = torch.arange(56).repeat_interleave(2)
    embeddings = torch.nn.functional.normalize(torch.randn(112, 128), dim=1)
    teacher = torch.nn.functional.normalize(embeddings + 0.1 * torch.randn(112, 128), dim=1)

    print('bs 112 (56 classes x 2), embed_dim 128, float32, CPU, torch {} with {} threads, {} alternating '
          'repeats (ms: best / median; speed-up of the best)'.format(
              torch.__version__, torch.get_num_threads(), args.repeats))
    header = '{:<20} {:<9} {:>18} {:>18} {:>9} {:>12}'.format(
        'loss', 'miner', 'vectorised ms', 'loop ms', 'speed-up', '|value diff|')
    print(header)
    print('-' * len(header))
    for loss_name in args.losses:
        for use_lsd in (False, True):
            key = loss_name + ('_lsd' if use_lsd else '')
            opt = make_opt(key)
            miner_key = DEFAULT_MINER.get(loss_name, 'distance')
            needs_miner = criteria.requires_miner(key)
            miner = batch_mining.select(miner_key, opt) if needs_miner else None
            objective, _ = criteria.build_objective(key, opt, N_CLASSES, miner)
            state = {name: parameter.detach() for name, parameter in objective.named_parameters()}
            state['reg_lambda'] = getattr(objective.ranking, 'reg_lambda', None)
            loop_miner = loop_criteria.MINERS[miner_key]() if needs_miner else None
            weight = objective.distillation_weight(EPOCH)

            def run_vectorised():
                return step_vectorised(objective, embeddings, teacher, labels, use_lsd)

            def run_loop():
                return step_loop(loss_name, loop_miner, opt, state, embeddings, teacher, labels, use_lsd, weight)

            run_vectorised(), run_loop()
            fast_times, loop_times, differences = [], [], []
            for _ in range(args.repeats):
                fast_ms, fast_value = timed(run_vectorised)
                loop_ms, loop_value = timed(run_loop)
                fast_times.append(fast_ms)
                loop_times.append(loop_ms)
                differences.append(abs(fast_value - loop_value))
            fast, loop = min(fast_times), min(loop_times)
            difference = '{:.1e}'.format(max(differences)) if loss_name in DETERMINISTIC else '-'
            print('{:<20} {:<9} {:>8.2f} / {:>7.2f} {:>8.2f} / {:>7.2f} {:>8.1f}x {:>12}'.format(
                key, miner_key if miner else '-', fast, statistics.median(fast_times), loop,
                statistics.median(loop_times), loop / fast, difference), flush=True)


if __name__ == '__main__':
    main()
