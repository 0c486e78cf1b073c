"""Evaluation: `evaluate` embeds a loader and returns its metrics (evaluation.results); the consumers of
that result print and log it (evaluation.reporting), checkpoint on improvement (evaluation.checkpoint_saver)
and draw the sample-recoveries figure (evaluation.recall_plot)."""
from evaluation.checkpoint_saver import CheckpointSaver
from evaluation.embedding import Embedder
from evaluation.reporting import log_histograms, log_metrics, metric_group, result_block
from evaluation.results import EvaluationResult, evaluate, main_process_alone, split_metrics

__all__ = ['CheckpointSaver', 'Embedder', 'EvaluationResult', 'evaluate', 'log_histograms', 'log_metrics',
           'main_process_alone', 'metric_group', 'result_block', 'split_metrics']
