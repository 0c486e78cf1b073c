"""Progress of a training epoch or an embedding pass (`--progress auto|bar|log|off`).

* `bar`: a tqdm bar on stderr, as the reference shows; training bars carry the running mean loss.
* `log`: for logs that are not a terminal (Slurm, the sweep launcher's per-run logs), a short plain
  line every LOG_INTERVAL seconds instead of carriage-return bars; passes shorter than that print nothing.
* `auto`: `bar` when stderr is a terminal, else `log`.
* `off`: nothing.

Progress only reads: it never draws a random number, never moves a tensor's value, and reads the loss
(one host transfer) at most once per REFRESH_SECONDS, so a run's numbers are the same in every mode.
"""
import math
import sys
import time

MODES = ('auto', 'bar', 'log', 'off')
LOG_INTERVAL = 30.0      # seconds between two plain lines
REFRESH_SECONDS = 1.0    # seconds between two reads of the loss for a bar


def resolve(mode, stream=None):
    """The mode actually used: `auto` becomes `bar` on a terminal, `log` otherwise."""
    if mode != 'auto':
        return mode
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, 'isatty', None)
    return 'bar' if isatty is not None and isatty() else 'log'


def duration(seconds):
    seconds = int(round(seconds))
    return '{}:{:02d}:{:02d}'.format(seconds // 3600, seconds // 60 % 60, seconds % 60)


class Progress:
    """`update(step, losses=None)` after each step (0-based); `close()` at the end. `losses` is the step's
    {name: 0-d tensor}; only 'loss' is shown, averaged over the steps read so far."""

    def __init__(self, mode, total, description, unit='it', stream=None, clock=time.monotonic):
        self.mode = resolve(mode, stream)
        self.total, self.description, self.unit = total, description, unit
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.start = self.last_print = self.last_read = clock()
        self.loss_sum, self.loss_count = 0.0, 0
        self.bar = None
        if self.mode == 'bar':
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=description, unit=unit, file=self.stream, leave=False,
                            dynamic_ncols=True)
        elif self.mode not in ('log', 'off'):
            raise ValueError('--progress {}: choose one of {}'.format(mode, ', '.join(MODES)))

    def read_loss(self, losses):
        if losses is None or 'loss' not in losses:
            return
        value = losses['loss']
        value = float(value.detach()) if hasattr(value, 'detach') else float(value)
        if math.isfinite(value):
            self.loss_sum += value
            self.loss_count += 1

    def mean_loss(self):
        return self.loss_sum / self.loss_count if self.loss_count else None

    def update(self, step, losses=None):
        if self.mode == 'off':
            return
        now = self.clock()
        due = now - self.last_read >= REFRESH_SECONDS if self.mode == 'bar' else \
            now - self.last_print >= LOG_INTERVAL
        if not due:
            if self.bar is not None:
                self.bar.update(step + 1 - self.bar.n)
            return
        self.last_read = now
        self.read_loss(losses)
        if self.bar is not None:
            if self.mean_loss() is not None:
                self.bar.set_postfix_str('loss {:.4f}'.format(self.mean_loss()), refresh=False)
            self.bar.update(step + 1 - self.bar.n)
            return
        self.last_print = now
        self.stream.write(self.line(step + 1, now - self.start) + '\n')
        self.stream.flush()

    def line(self, done, elapsed):
        text = '{}: {}/{} {} ({:.0f} %), {}'.format(self.description, done, self.total, self.unit,
                                                    100.0 * done / max(self.total, 1), duration(elapsed))
        if 0 < done < self.total:
            text += ', ~{} left'.format(duration(elapsed / done * (self.total - done)))
        if self.mean_loss() is not None:
            text += ', loss {:.4f}'.format(self.mean_loss())
        return text

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def factory(mode, enabled=True):
    """A `(total, description, unit) -> Progress` maker for one run; `enabled=False` (a data-parallel
    helper process) or `mode == 'off'` makes silent ones."""
    def make(total, description, unit='it'):
        return Progress(mode if enabled else 'off', total, description, unit)
    return make
