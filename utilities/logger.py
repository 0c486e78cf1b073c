"""Run folder, progress savers, CSV logs, progression plots and W&B scalars, in the reference's layout.

The class names `Progress_Saver` and `LOGGER` are the reference's, so checkpoints that pickle the
progress savers stay loadable across both codebases.
"""
import csv
import datetime
import io
import os

import numpy as np

from utilities import misc
from utilities.atomic import atomic_pickle_dump, atomic_write_text

PLOT_COLOURS = ['red', 'green', 'blue', 'yellow', 'magenta', 'cyan', 'orange', 'darkgreen', 'lightblue']
NON_METRIC_SEGMENTS = ('epoch', 'epochs', 'time')


class Progress_Saver:
    """group -> segment -> {'content': [values], 'saved_idx': values already written out}."""

    def __init__(self):
        self.groups = {}

    def log(self, segment, content, group=None):
        group = segment if group is None else group
        segments = self.groups.setdefault(group, {})
        segments.setdefault(segment, {'content': [], 'saved_idx': 0})['content'].append(content)


ProgressSaver = Progress_Saver


def run_folder_name(results_folder, savename, dataset, arch):
    """Base run-folder path (before collision suffixes): the savename, or <DATASET>_<ARCH>_<date>. A timm
    name's '/' becomes '-' (`timm/vit...` -> `TIMM-VIT...`): one folder directly under the results folder."""
    if savename:
        return results_folder + '/' + savename
    now = datetime.datetime.now()
    date = '{}-{}-{}-{}-{}-{}'.format(now.year, now.month, now.day, now.hour, now.minute, now.second)
    return results_folder + '/{}_{}_{}'.format(dataset.upper(), arch.upper().replace('/', '-'), date)


def create_run_folder(results_folder, savename, dataset, arch):
    """Create and return the run folder; on a name collision suffix _1, _2, ... (the counter replaces
    the previous suffix). The reference suffixed the parent folder for date-based names; we suffix the name."""
    base = run_folder_name(results_folder, savename, dataset, arch)
    candidate, counter = base, 1
    while os.path.exists(candidate):
        candidate = base + '_' + str(counter)
        counter += 1
    os.makedirs(candidate)
    return candidate


def save_options(recorded_options, run_folder):
    """Parameter_Info.txt and hypa.pkl of the run folder (the options as recorded, key redacted)."""
    safe = misc.redacted_namespace(recorded_options)
    atomic_write_text(misc.gimme_save_string(safe), run_folder + '/Parameter_Info.txt')
    atomic_pickle_dump(safe, run_folder + '/hypa.pkl')


def csv_text(segments, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(segments)
    writer.writerows(rows)
    return buffer.getvalue()


def plot_title(group, segments, contents):
    parts = []
    for segment, content in zip(segments, contents):
        if segment in NON_METRIC_SEGMENTS or not len(content):
            continue
        best = np.min(content) if 'loss' in segment else np.max(content)
        parts.append('{}: {:.4f}'.format(segment, best))
    return group + ': ' + '  |  '.join(parts)


def make_plot(path, sub_logger, group, segments, contents):
    """One SVG per (sub-logger, group) with the full history; colours cycle through the nine."""
    import matplotlib
    matplotlib.use('agg')
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    with plt.style.context('ggplot'):
        figure = Figure(figsize=(25, 19))
        axes = figure.add_subplot(1, 1, 1)
        for i, (segment, content) in enumerate(zip(segments, contents)):
            x_values = np.arange(len(content))
            axes.plot(x_values, content, '-', color=PLOT_COLOURS[i % len(PLOT_COLOURS)], linewidth=1.7,
                      label=sub_logger + ' ' + segment)
        title = plot_title(group, segments, contents)
        axes.set_title(title, fontsize=22)
        axes.legend(loc='upper left', fontsize=16)
        axes.tick_params(axis='both', which='major', labelsize=18)
        buffer = io.StringIO()
        figure.savefig(buffer, format='svg')
    atomic_write_text(buffer.getvalue(), path)
    return title


class LOGGER:
    """Sub-loggers (Train, Test, Model Grad[, Val]) each with a progress saver, CSV files and plots."""

    def __init__(self, run_folder, sub_loggers=(), log_online=False, make_plots=True, write_files=True):
        """`write_files` False (the non-main processes of a data-parallel run): keep the histories, write nothing."""
        self.sub_loggers = list(sub_loggers)
        self.save_path = run_folder
        self.write_files = write_files
        self.csv_path = (run_folder or '') + '/CSV_Logs'
        self.plot_path = (run_folder or '') + '/Progression_Plots'
        if write_files:
            os.makedirs(self.csv_path, exist_ok=True)
            if make_plots:
                os.makedirs(self.plot_path, exist_ok=True)
        self.progress_saver = {name: Progress_Saver() for name in self.sub_loggers}
        self.plot_titles = {}
        self.log_online = log_online
        self.make_plots = make_plots

    def update(self, *sub_loggers, all=False, step=None):
        """Write the values logged since the last update: CSV rows, plots, W&B means at `step` (the epoch)."""
        online_content = {}
        for sub_logger in (self.sub_loggers if all else sub_loggers):
            for group, segments_dict in self.progress_saver[sub_logger].groups.items():
                segments = list(segments_dict.keys())
                for segment in segments:
                    entry = segments_dict[segment]
                    new_values = entry['content'][entry['saved_idx']:]
                    entry['saved_idx'] = len(entry['content'])
                    name = sub_logger + ': ' + group if group == segment else \
                        sub_logger + ': ' + group + ': ' + segment
                    if new_values:
                        online_content[name] = float(np.mean(new_values))
                self.write_group(sub_logger, group)
        if self.log_online and online_content:
            import wandb
            wandb.log(online_content, step=step)

    def write_group(self, sub_logger, group):
        """CSV and plot of one group, rebuilt from the saved history so a rewrite is always consistent."""
        segments_dict = self.progress_saver[sub_logger].groups[group]
        segments = list(segments_dict.keys())
        if not self.write_files:
            return
        saved = [segments_dict[s]['content'][:segments_dict[s]['saved_idx']] for s in segments]
        rows = [list(row) for row in zip(*saved)]
        atomic_write_text(csv_text(segments, rows),
                          '{}/Data_{}_{}.csv'.format(self.csv_path, sub_logger, group))
        path = '{}/Graph_{}_{}.svg'.format(self.plot_path, sub_logger, group)
        if self.make_plots:
            self.plot_titles[(sub_logger, group)] = make_plot(path, sub_logger, group, segments, saved)
        else:
            self.plot_titles[(sub_logger, group)] = plot_title(group, segments, saved)

    def rewrite_all(self):
        """After a resume: make every CSV/plot match the restored history (drops rows of a killed epoch)."""
        for sub_logger in self.sub_loggers:
            for group in self.progress_saver[sub_logger].groups:
                self.write_group(sub_logger, group)

    def summary_lines(self, selection_metric='e_recall@1', selection_evaltype='discriminative'):
        """training_summary.txt body: one line per (sub-logger, group) that holds a metric (each value its
        best over the epochs); with a Val log, also the Test values at the epoch of the best Val
        `selection_metric` of `selection_evaltype` (pass the first --storage_metrics and --evaltypes)."""
        lines = []
        for sub_logger in self.sub_loggers:
            for group, segments_dict in self.progress_saver[sub_logger].groups.items():
                if all(segment in NON_METRIC_SEGMENTS for segment in segments_dict):
                    continue
                title = self.plot_titles.get((sub_logger, group))
                if title is None:
                    segments = list(segments_dict)
                    title = plot_title(group, segments, [segments_dict[s]['content'] for s in segments])
                lines.append('{} metrics: {}'.format(sub_logger.upper(), title))
        if 'Val' in self.progress_saver and 'Test' in self.progress_saver:
            from utilities.results.selection import val_selected_lines
            lines += val_selected_lines(self.progress_saver['Val'].groups, self.progress_saver['Test'].groups,
                                        selection_metric, selection_evaltype)
        return lines
