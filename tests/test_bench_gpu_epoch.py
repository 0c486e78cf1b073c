"""bench/gpu_epoch.py at its tiny size, on whatever device this machine has, so the GPU benchmark cannot rot:
it generates a CUB-layout tree, runs one epoch per mode and reports every phase of both."""
import json
import os
import subprocess
import sys

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))
import gpu_epoch  # noqa: E402

PHASES = ['training', 'Test pass', 'Train pass', 'epoch']


def test_generated_tree_has_the_cub200_layout(tmp_path):
    gpu_epoch.make_tree(str(tmp_path), classes=3, per_class=2, width=50, height=40)
    images = tmp_path / 'cub200' / 'images'
    assert sorted(os.listdir(images)) == ['001.Bird_001', '002.Bird_002', '003.Bird_003']
    files = sorted(os.listdir(images / '002.Bird_002'))
    assert files == ['Bird_002_0001_796097.jpg', 'Bird_002_0002_796098.jpg']
    with Image.open(images / '002.Bird_002' / files[0]) as image:
        assert image.size == (50, 40) and image.format == 'JPEG'


def test_tiny_run_reports_every_phase_of_both_modes(tmp_path):
    summary_path = tmp_path / 'summary.json'
    result = subprocess.run([sys.executable, 'bench/gpu_epoch.py', '--tiny', '--workdir', str(tmp_path / 'work'),
                             '--json', str(summary_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in ['=== reference mode', '=== fast mode', 'goal fast epoch <= 0.5 x reference epoch']:
        assert line in result.stdout
    fast_command = [line for line in result.stdout.splitlines() if line.startswith('=== fast mode')][0]
    import torch
    # without CUDA the fast mode runs float32 (bf16 autocast on a CPU times the CPU's emulation)
    assert ('--amp bf16' if torch.cuda.is_available() else '--amp off') in fast_command
    summary = json.loads(summary_path.read_text())
    for mode in ('reference', 'fast'):
        for phase in PHASES:
            assert summary['seconds'][mode][phase] > 0, (mode, phase)
        assert summary['results'][mode]['steps'] == 2  # 16 training images, batches of 8
    for phase in PHASES:
        ratio = summary['seconds']['ratio'][phase]
        assert ratio == summary['seconds']['fast'][phase] / summary['seconds']['reference'][phase]
    run_folder = tmp_path / 'work' / 'runs' / 'cub200'
    assert sorted(os.listdir(run_folder)) == ['fast', 'reference']
