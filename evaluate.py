"""Evaluate a trained model: `python evaluate.py --checkpoint <checkpoint file or run folder> [--split test]`.

Rebuilds the backbone from the options saved with the checkpoint, embeds the split and prints the
metrics in the trainers' format; optionally exports the embeddings (.npz), draws a retrieval figure
(.png) and writes the metrics as JSON. `python evaluate.py --help` lists the flags.
"""
import sys

from evaluation.checkpoint_eval import main

if __name__ == '__main__':
    main(sys.argv[1:])
