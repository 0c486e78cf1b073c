"""The device a run trains on, chosen so that a job scheduler's GPU assignment is respected.

Schedulers (Slurm, Kubernetes, sweep launchers) hand a job its GPUs through CUDA_VISIBLE_DEVICES. When
that variable is set -- even to the empty string, the usual way to force the CPU -- it is left alone
and --gpu N indexes the devices it makes visible. Only when it is not set does --gpu pick a physical
GPU the reference's way (PCI bus order, the variable set before CUDA starts). Under torchrun,
LOCAL_RANK picks the visible device. A GPU that was asked for and exists but cannot be used stops
the run with a one-line error instead of training on the CPU by accident.
"""
import os
import sys

import torch

DEFAULT_GPU = [0]


class DeviceError(Exception):
    """A requested GPU that does not exist or cannot be used: the trainer prints this one line."""


def local_rank_from(environ=os.environ):
    """torchrun's LOCAL_RANK as an int, or None outside torchrun."""
    value = environ.get('LOCAL_RANK')
    if value is None or value == '':
        return None
    try:
        return int(value)
    except ValueError:
        raise DeviceError('LOCAL_RANK={!r} is not an integer (set by torchrun to pick the GPU).'
                          .format(value)) from None


def physical_gpu_count():
    """GPUs on the machine, through NVML, which (unlike CUDA) can be asked before CUDA_VISIBLE_DEVICES is
    fixed; -1 when NVML cannot tell (then the count is only known once CUDA has started)."""
    count = getattr(torch.cuda, '_device_count_nvml', None)
    if count is None or not torch.cuda._is_compiled():
        return -1
    try:
        return int(count())
    except Exception:  # NVML missing or broken: unknown, not zero
        return -1


def runtime_gpu_count():
    """GPUs the CUDA runtime sees. It reads CUDA_VISIBLE_DEVICES once, when anything first asks it (even
    torch.cuda.is_available()); a variable set later is ignored, and this count shows it."""
    if not torch.cuda._is_compiled():
        return 0
    return int(torch._C._cuda_getDeviceCount())


def probe(device):
    """Make `device` current and run one kernel on it: an occupied exclusive-mode GPU, a lost device or
    a GPU this torch build has no kernels for fails here, at start-up, not in the first step."""
    torch.cuda.set_device(device)
    torch.ones(1, device=device).add_(1).cpu()


def cpu_notice(reason, evaluate_on_gpu):
    print('Notice: {}, training on the CPU.'.format(reason), file=sys.stderr)
    if evaluate_on_gpu:
        print('Notice: --evaluate_on_gpu ignored without a CUDA device.', file=sys.stderr)
    return torch.device('cpu')


def select_device(gpu_indices, evaluate_on_gpu, local_rank=None, environ=os.environ):
    """torch.device('cuda:<i>') (and made current) for the visible device i the rules above give, or
    the CPU with a notice when CUDA has no device; DeviceError for a GPU that cannot be used."""
    gpu_indices = list(gpu_indices) if gpu_indices else list(DEFAULT_GPU)
    index = int(gpu_indices[0])
    visible = environ.get('CUDA_VISIBLE_DEVICES')
    if local_rank is not None:
        if gpu_indices != DEFAULT_GPU:
            print('Notice: --gpu {} ignored: under torchrun LOCAL_RANK={} picks the GPU.'.format(
                ' '.join(str(i) for i in gpu_indices), local_rank), file=sys.stderr)
        index, flag = local_rank, 'LOCAL_RANK={}'.format(local_rank)
    else:
        flag = '--gpu {}'.format(index)
    if index < 0:
        raise DeviceError('{}: a GPU index is 0 or more.'.format(flag))

    if visible is None and local_rank is None and not torch.cuda.is_initialized():
        physical = physical_gpu_count()
        if physical > 0 and index >= physical:
            raise DeviceError('{}: this machine has {} GPU(s), numbered 0-{}.'.format(flag, physical, physical - 1))
        # before CUDA starts, so that the one chosen GPU becomes cuda:0
        before = {key: environ.get(key) for key in ('CUDA_DEVICE_ORDER', 'CUDA_VISIBLE_DEVICES')}
        environ['CUDA_DEVICE_ORDER'] = 'PCI_BUS_ID'
        environ['CUDA_VISIBLE_DEVICES'] = str(index)
        if runtime_gpu_count() > 1:  # CUDA had already started with every GPU visible: index those instead
            for key, value in before.items():  # and leave the environment saying what CUDA sees
                if value is None:
                    environ.pop(key)
                else:
                    environ[key] = value
            print('Notice: CUDA started before --gpu could set CUDA_VISIBLE_DEVICES; using cuda:{} of all GPUs.'
                  .format(index), file=sys.stderr)
            where = 'all GPUs'
        else:
            index = 0
            where = 'physical GPU {}'.format(gpu_indices[0])
    elif visible is not None:
        where = 'CUDA_VISIBLE_DEVICES={!r}'.format(visible)
    else:
        where = 'the visible GPUs'

    if visible is not None and visible.strip() == '':
        return cpu_notice('CUDA_VISIBLE_DEVICES is empty', evaluate_on_gpu)
    count = runtime_gpu_count()  # not torch.cuda.device_count(): before CUDA starts that asks NVML, which
    if count == 0:               # reads the variable as it is now, not as the runtime read it
        return cpu_notice('no CUDA device available', evaluate_on_gpu)
    if index >= count:
        raise DeviceError('{}: only {} GPU(s) visible ({}); the index counts the visible GPUs from 0.'
                          .format(flag, count, where))
    device = torch.device('cuda', index)
    try:
        probe(device)
    except Exception as error:  # the device exists, but this process cannot use it
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DeviceError('{}: GPU {} ({}) cannot be used: {}'.format(flag, index, where, first_line)) from None
    return device
