import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import subprocess  # noqa: E402

import pytest  # noqa: E402

# One finished run shared by the tests that only need *a* finished run (outputs, permissions, resume-state
# layout, evaluate.py): 2 epochs of LSD on the embedded digits, trained under umask 022.
FINISHED_RUN_ARGS = ['--dataset', 'digits', '--arch', 'resnet18_normalize', '--not_pretrained', '--loss', 'margin_lsd',
                     '--batch_mining', 'distance', '--kd_alpha', '20', '--n_epochs', '2', '--bs', '40',
                     '--samples_per_class', '4', '--embed_dim', '8', '--kernels', '0', '--no_train_metrics',
                     '--seed', '0', '--evaluation_metrics', 'e_recall@1', 'e_recall@2', 'nmi', 'mAP_c']


@pytest.fixture(scope='session')
def finished_run(tmp_path_factory):
    """Path of the shared finished run folder; tests that change files in it work on a copy."""
    save_path = tmp_path_factory.mktemp('finished_run')
    environment = dict(os.environ, PYTHONWARNINGS='ignore')
    environment.pop('DML_TRACEBACK', None)
    done = subprocess.run([sys.executable, 'main.py'] + FINISHED_RUN_ARGS + ['--save_path', str(save_path),
                                                                             '--savename', 'run'],
                          cwd=ROOT, capture_output=True, text=True, env=environment, timeout=900,
                          preexec_fn=lambda: os.umask(0o022))
    assert done.returncode == 0, done.stderr[-3000:]
    return os.path.join(str(save_path), 'digits', 'run')
