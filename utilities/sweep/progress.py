"""One live line: done / running / failed / pending, elapsed, and the remaining time it implies.

The estimate is the mean duration of the runs finished by this launch, times the work left
(pending runs, plus what the running ones still need), divided by the number of slots. On a terminal
the line is redrawn in place; in a log file it is printed again whenever a count changes.
"""
import sys
import time


def clock(seconds):
    seconds = int(max(seconds, 0))
    return '{}:{:02d}:{:02d}'.format(seconds // 3600, seconds // 60 % 60, seconds % 60)


class Progress:
    def __init__(self, slots, stream=None):
        self.slots = max(slots, 1)
        self.stream = stream or sys.stdout
        self.start = time.time()
        self.durations = []
        self.last = None
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()

    def finished(self, seconds):
        self.durations.append(seconds)

    def line(self, counts, running_elapsed):
        text = 'sweep: {done} done · {running} running · {failed} failed · {pending} pending'.format(**counts)
        text += ' · elapsed ' + clock(time.time() - self.start)
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            left = counts['pending'] * mean + sum(max(mean - e, 0) for e in running_elapsed)
            text += ' · remaining ~' + clock(left / self.slots)
        return text

    def show(self, counts, running_elapsed=()):
        text = self.line(counts, running_elapsed)
        if self.tty:
            self.stream.write('\r' + text + '\033[K')
            self.stream.flush()
        elif (counts != self.last):
            self.stream.write(text + '\n')
            self.stream.flush()
        self.last = dict(counts)

    def event(self, text):
        """A line of its own above the live line (run started, finished, failed)."""
        self.stream.write(('\r\033[K' if self.tty else '') + text + '\n')
        self.stream.flush()
        self.last = None

    def close(self):
        if self.tty:
            self.stream.write('\n')
            self.stream.flush()
