"""Mixed precision and memory format for the backbone (`--amp`, `--channels_last`), in one place.

The backbone's forward and backward, the teacher's forward and the evaluation embedding run under
`torch.autocast`; what leaves the backbone is cast to float32 before any loss, miner or distillation
term sees it (large fills and low-temperature softmaxes must not meet half precision). fp16 needs a
GradScaler, bf16 does not. `--amp off` runs nothing of this: the float32 numbers of before, bit for bit.
"""
import contextlib

import torch

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


class Precision:
    def __init__(self, amp, channels_last, device):
        self.amp = amp
        self.device = device
        self.dtype = AMP_DTYPES.get(amp)
        # channels_last pays off with tensor-core kernels (half precision on CUDA); measured in bench/gpu_epoch.py
        self.channels_last = channels_last == 'on' or (channels_last == 'auto' and self.dtype is not None
                                                       and device.type == 'cuda')
        self.scaler = torch.amp.GradScaler(device.type) if amp == 'fp16' else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def prepare_model(self, model):
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def prepare_images(self, images):
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def backward(self, loss):
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer):
        """Gradients in their true scale (for the statistics and any all-reduce) before the step."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer):
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state):
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
