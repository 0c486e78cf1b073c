"""Device selection (runtime/device.py) on the CPU: CUDA is faked through monkeypatched device counts,
the environment is a plain dict, and the probe records which device it was asked to make current."""
import pytest
import torch

from runtime import device as device_module
from runtime.device import DeviceError, local_rank_from, select_device


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with `physical` GPUs of which CUDA sees `visible` (set by the test); probes are recorded."""
    state = {'physical': 4, 'visible': 4, 'initialized': False, 'probed': [], 'broken': set()}

    def probe(device):
        if device.index in state['broken']:
            raise RuntimeError('CUDA error: all CUDA-capable devices are busy or unavailable\nmore detail')
        state['probed'].append(device)

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: state['visible'] > 0)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: state['visible'])
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: state['initialized'])
    monkeypatch.setattr(device_module, 'physical_gpu_count', lambda: state['physical'])
    monkeypatch.setattr(device_module, 'runtime_gpu_count', lambda: state['visible'])
    monkeypatch.setattr(device_module, 'probe', probe)
    return state


def test_scheduler_assignment_is_kept_and_gpu_indexes_the_visible_devices(fake_cuda):
    fake_cuda['visible'] = 2
    environ = {'CUDA_VISIBLE_DEVICES': '5,7'}
    assert select_device([0], False, environ=environ) == torch.device('cuda', 0)
    assert select_device([1], False, environ=environ) == torch.device('cuda', 1)
    assert environ == {'CUDA_VISIBLE_DEVICES': '5,7'}
    assert fake_cuda['probed'] == [torch.device('cuda', 0), torch.device('cuda', 1)]


def test_uuid_lists_are_left_as_they_are(fake_cuda):
    fake_cuda['visible'] = 1
    environ = {'CUDA_VISIBLE_DEVICES': 'GPU-8c4e2b1a-0000-4d3f-9a1b-3f2e1d0c9b8a'}
    assert select_device([0], True, environ=environ) == torch.device('cuda', 0)
    assert environ == {'CUDA_VISIBLE_DEVICES': 'GPU-8c4e2b1a-0000-4d3f-9a1b-3f2e1d0c9b8a'}


def test_index_beyond_the_visible_devices_is_a_one_line_error(fake_cuda):
    fake_cuda['visible'] = 2
    with pytest.raises(DeviceError) as error:
        select_device([2], False, environ={'CUDA_VISIBLE_DEVICES': '5,7'})
    message = str(error.value)
    assert '\n' not in message and message.startswith('--gpu 2:') and "'5,7'" in message
    assert fake_cuda['probed'] == []


def test_empty_variable_forces_the_cpu_and_stays_empty(fake_cuda, capsys):
    environ = {'CUDA_VISIBLE_DEVICES': ''}
    assert select_device([0], True, environ=environ) == torch.device('cpu')
    assert environ == {'CUDA_VISIBLE_DEVICES': ''}
    err = capsys.readouterr().err
    assert 'training on the CPU' in err and '--evaluate_on_gpu ignored' in err
    assert fake_cuda['probed'] == []


def test_unset_variable_keeps_the_reference_behaviour(fake_cuda):
    environ = {}
    fake_cuda['visible'] = 1  # what CUDA sees once the variable names one GPU
    assert select_device([3], False, environ=environ) == torch.device('cuda', 0)
    assert environ == {'CUDA_DEVICE_ORDER': 'PCI_BUS_ID', 'CUDA_VISIBLE_DEVICES': '3'}
    assert fake_cuda['probed'] == [torch.device('cuda', 0)]


def test_unset_variable_and_a_gpu_the_machine_lacks_is_an_error_not_a_cpu_run(fake_cuda):
    environ = {}
    with pytest.raises(DeviceError, match=r'^--gpu 4: this machine has 4 GPU\(s\), numbered 0-3\.$'):
        select_device([4], False, environ=environ)
    assert environ == {}


def test_unset_variable_after_the_cuda_runtime_started_indexes_all_devices(fake_cuda, capsys):
    """Something asked CUDA for its devices first (torch.cuda.is_available()): the variable comes too late."""
    environ = {}
    assert select_device([3], False, environ=environ) == torch.device('cuda', 3)
    assert 'CUDA started before --gpu could set CUDA_VISIBLE_DEVICES' in capsys.readouterr().err
    assert fake_cuda['probed'] == [torch.device('cuda', 3)]
    assert environ == {}  # the variable CUDA ignored is not left behind
    environ = {'CUDA_DEVICE_ORDER': 'FASTEST_FIRST'}
    assert select_device([1], False, environ=environ) == torch.device('cuda', 1)
    assert environ == {'CUDA_DEVICE_ORDER': 'FASTEST_FIRST'}


def test_unset_variable_after_cuda_started_indexes_all_devices(fake_cuda):
    fake_cuda['initialized'] = True  # too late for the variable to take effect
    environ = {}
    assert select_device([2], False, environ=environ) == torch.device('cuda', 2)
    assert environ == {}


def test_gpu_that_exists_but_cannot_be_used_is_a_one_line_error(fake_cuda):
    fake_cuda['visible'], fake_cuda['broken'] = 2, {1}
    with pytest.raises(DeviceError) as error:
        select_device([1], False, environ={'CUDA_VISIBLE_DEVICES': '0,1'})
    message = str(error.value)
    assert message.startswith('--gpu 1: GPU 1') and 'cannot be used' in message and 'busy' in message
    assert '\n' not in message


def test_local_rank_picks_the_visible_device_and_ignores_gpu(fake_cuda, capsys):
    environ = {}
    assert select_device([0], False, local_rank=3, environ=environ) == torch.device('cuda', 3)
    assert environ == {} and capsys.readouterr().err == ''
    assert select_device([1], False, local_rank=2, environ=environ) == torch.device('cuda', 2)
    assert '--gpu 1 ignored' in capsys.readouterr().err
    with pytest.raises(DeviceError, match='^LOCAL_RANK=4: only 4 GPU'):
        select_device([0], False, local_rank=4, environ=environ)


def test_local_rank_from_the_environment():
    assert local_rank_from({}) is None
    assert local_rank_from({'LOCAL_RANK': '2'}) == 2
    with pytest.raises(DeviceError, match='LOCAL_RANK'):
        local_rank_from({'LOCAL_RANK': 'x'})


def test_negative_index_is_an_error(fake_cuda):
    with pytest.raises(DeviceError, match='^--gpu -1:'):
        select_device([-1], False, environ={'CUDA_VISIBLE_DEVICES': '0'})


def test_without_cuda_the_cpu_with_both_notices(fake_cuda, capsys):
    fake_cuda['physical'], fake_cuda['visible'] = -1, 0
    environ = {}
    assert select_device([0], True, environ=environ) == torch.device('cpu')
    err = capsys.readouterr().err
    assert 'Notice: no CUDA device available, training on the CPU.' in err
    assert 'Notice: --evaluate_on_gpu ignored without a CUDA device.' in err
    assert environ == {'CUDA_DEVICE_ORDER': 'PCI_BUS_ID', 'CUDA_VISIBLE_DEVICES': '0'}  # as the reference did


def test_on_this_machine_without_fakes():
    """Really run: on a machine without CUDA the CPU, on one with CUDA a usable cuda:<i>."""
    environ = {'CUDA_VISIBLE_DEVICES': ''} if not torch.cuda.is_available() else {}
    device = select_device([0], False, environ=environ)
    if torch.cuda.is_available():
        assert device.type == 'cuda' and torch.cuda.current_device() == device.index
    else:
        assert device == torch.device('cpu')
