"""Evaluate a saved checkpoint on one split, without the training loop (behind `evaluate.py`).

Everything is rebuilt through the project's own functions (architectures.select, datasets.select, the
metric computer), from the options saved with the checkpoint, so the numbers equal those the trainer
logged for that epoch.
"""
import argparse
import copy
import glob
import os
import sys

import numpy as np
import torch

SPLITS = {'test': ('testing', 'Test'), 'train': ('evaluation', 'Train'), 'val': ('validation', 'Val')}
CHECKPOINT_PREFERENCE = ('Val', 'Test', 'Train')  # in a run folder: the validation-selected one first


class EvaluationError(Exception):
    """Bad input to evaluate.py (a path, a checkpoint, a flag value): printed as one line."""


def build_parser():
    parser = argparse.ArgumentParser(description='Evaluate a saved checkpoint of this framework on one split.')
    parser.add_argument('--checkpoint', required=True,
                        help='A checkpoint_<Test|Train|Val>_<evaltype>_<metric>.pth.tar file, or a run folder '
                             '(then its Val checkpoint if there is one, else its Test one, else its Train one).')
    parser.add_argument('--source_path', default=None,
                        help='Parent folder of the dataset folders, when the data are no longer where training '
                             'read them (default: the saved --source_path).')
    parser.add_argument('--split', default='test', choices=tuple(SPLITS),
                        help='test: the unseen classes; train: the training images with evaluation transforms; '
                             'val: the validation split (runs trained with --use_tv_split).')
    parser.add_argument('--evaluation_metrics', nargs='+', default=None,
                        help='Metric names of the registry (default: those the run was trained with).')
    parser.add_argument('--evaluate_on_gpu', action='store_true',
                        help='Nearest-neighbour search and k-means on the GPU (default: as the run was trained).')
    parser.add_argument('--kernels', type=int, default=None,
                        help='Data-loading workers and faiss threads (default: the saved --kernels).')
    parser.add_argument('--export_embeddings', default=None, metavar='OUT.npz',
                        help='Write features, labels, image paths, epoch and options to this .npz file '
                             '(a query/gallery split, e.g. In-Shop test: query_features, query_labels, '
                             'query_image_paths and gallery_features, gallery_labels, gallery_image_paths).')
    parser.add_argument('--retrieval_figure', default=None, metavar='OUT.png',
                        help='Draw queries and their nearest gallery images into this PNG file.')
    parser.add_argument('--n_queries', type=int, default=8, help='Queries in the retrieval figure.')
    parser.add_argument('--n_neighbours', type=int, default=5, help='Nearest gallery images per query in the figure.')
    parser.add_argument('--figure_seed', type=int, default=0, help='Seed of the choice of queries in the figure.')
    parser.add_argument('--json', default=None, metavar='OUT.json', help='Write the metrics to this JSON file.')
    parser.add_argument('--export_onnx', default=None, metavar='OUT.onnx',
                        help='Write the embedding network as ONNX (dynamic batch, the embedding normalisation '
                             'included, the preprocessing in its metadata) and stop: no data are read, nothing '
                             'is evaluated.')
    parser.add_argument('--progress', default='auto', choices=('auto', 'bar', 'log', 'off'),
                        help='Progress of the embedding pass: bar (tqdm), log (a plain line every 30 s), off; '
                             'auto = bar on a terminal, log otherwise.')
    return parser


# ------------------------------------------------------------------------------------------------
# checkpoint and options

def resolve_checkpoint(path):
    """The checkpoint file `path` names: itself, or the preferred checkpoint of a run folder."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise EvaluationError('--checkpoint {}: no such file or folder'.format(path))
    found = sorted(glob.glob(os.path.join(glob.escape(path), 'checkpoint_*.pth.tar')))
    for log_key in CHECKPOINT_PREFERENCE:
        chosen = [f for f in found if os.path.basename(f).startswith('checkpoint_{}_'.format(log_key))]
        if chosen:
            return chosen[0]
    raise EvaluationError('--checkpoint {}: the folder holds no checkpoint_<Test|Train|Val>_*.pth.tar '
                          '(is it a run folder of this framework?)'.format(path))


def load_checkpoint(path):
    """The checkpoint dict; one-line error for a file that is not a checkpoint of this framework."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:
        raise EvaluationError('--checkpoint {}: not a checkpoint of this framework (torch.load failed: {})'.format(
            path, str(error).splitlines()[0] if str(error) else type(error).__name__)) from None
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint or 'opt' not in checkpoint:
        raise EvaluationError("--checkpoint {}: not a checkpoint of this framework (expected a dict with "
                              "'state_dict' and 'opt')".format(path))
    return checkpoint


def checkpoint_epoch(checkpoint):
    """The epoch the weights are from: the 'epoch' entry, else the last epoch the Train log had recorded
    (it logs `epochs` before the evaluation that saved the checkpoint), else the saved options' epoch."""
    if checkpoint.get('epoch') is not None:
        return int(checkpoint['epoch'])
    progress = checkpoint.get('progress') or {}
    train = progress.get('Train') if isinstance(progress, dict) else None
    try:
        content = train.groups['epochs']['epochs']['content']
        if content:
            return int(content[-1])
    except (AttributeError, KeyError, TypeError):
        pass
    epoch = getattr(checkpoint['opt'], 'epoch', None)
    return None if epoch is None else int(epoch)


def dataset_parent(source_path, dataset):
    """Saved source paths are either the parent of the dataset folders or (older runs, the reference)
    `<parent>/<dataset>`; the parent is returned. A user's own data (csv, folder) is its path itself."""
    import datasets
    source_path = os.path.normpath(source_path)
    if datasets.is_own_data(dataset):
        return source_path
    if os.path.basename(source_path) == dataset and os.path.isdir(source_path) \
            and not os.path.isdir(os.path.join(source_path, dataset)):
        return os.path.dirname(source_path)
    return source_path


def evaluation_options(saved_opt, cli):
    """A private namespace: today's defaults, overlaid by the saved options, then the flags given now."""
    import parameters

    opt = parameters.read_arguments([])
    for key, value in vars(saved_opt).items():
        setattr(opt, key, copy.deepcopy(value))
    opt.not_pretrained, opt.pretrained = True, False  # the weights come from the checkpoint
    opt.pretrained_weights = ''  # (a timm backbone is rebuilt from the saved --arch / --input_size alone)
    opt.source_path = dataset_parent(cli.source_path or opt.source_path, opt.dataset)
    if cli.evaluation_metrics:
        opt.evaluation_metrics = list(cli.evaluation_metrics)
    if cli.evaluate_on_gpu:
        opt.evaluate_on_gpu = True
    if cli.kernels is not None:
        opt.kernels = cli.kernels
    opt.rho_spectrum_embed_dim = opt.embed_dim
    return opt


def validate_metrics(names, opt):
    import metrics
    for name in names:
        try:
            metrics.select(name, opt)
        except NotImplementedError as error:
            raise EvaluationError('--evaluation_metrics: {}'.format(error)) from None


# ------------------------------------------------------------------------------------------------
# network, data, metrics

def build_network(opt, state_dict, device):
    import architectures
    model = architectures.select(opt.arch, opt)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        raise EvaluationError('--checkpoint: its weights do not fit --arch {} --embed_dim {} ({})'.format(
            opt.arch, opt.embed_dim, str(error).splitlines()[0])) from None
    return model.to(device).eval()


def build_split(opt, split):
    """(dataset object of `split`, number of training classes) through the project's dataset registry."""
    import datasets
    data_folder = datasets.data_folder(opt.dataset, opt.source_path)
    if datasets.is_own_data(opt.dataset) and not os.path.exists(data_folder):
        raise EvaluationError('--source_path {}: not found (the run read its {} data there; give where they are '
                              'now)'.format(data_folder, opt.dataset))
    if 'digits' not in opt.dataset and not datasets.is_own_data(opt.dataset) and not os.path.isdir(data_folder):
        raise EvaluationError('--source_path {}: no {} data folder at {} (give the parent folder of the dataset '
                              'folders)'.format(opt.source_path, opt.dataset, data_folder))
    dataset_splits = datasets.select(opt.dataset, opt, data_folder)
    key = SPLITS[split][0]
    if dataset_splits.get(key) is None:
        raise EvaluationError('--split {}: the run was trained without --use_tv_split, it has no validation '
                              'split'.format(split))
    return dataset_splits[key], len(dataset_splits['training'].avail_classes)


def embedder_and_loader(opt, model, dataset, device, progress='off'):
    """The trainers' Embedder (device normalisation of the fast pipeline's uint8 batches, the run's --amp /
    --channels_last) and a loader of `dataset` built like theirs."""
    import datasets
    import evaluation
    from runtime.precision import Precision
    from utilities.progress import factory

    precision = Precision(opt.amp, opt.channels_last, device)
    precision.prepare_model(model)
    loader = torch.utils.data.DataLoader(dataset, batch_size=opt.eval_bs or opt.bs, shuffle=False,
                                         **datasets.loader_options(opt, device))
    embedder = evaluation.Embedder(model, device, datasets.device_normaliser(opt), precision,
                                   progress=factory(progress))
    return embedder, loader


def embed(opt, model, dataset, device, progress='off'):
    """Embeddings alone, as the trainers compute them: (labels, {evaltype: N x D})."""
    embedder, loader = embedder_and_loader(opt, model, dataset, device, progress)
    labels, features, _ = embedder(loader, opt.evaltypes)
    return labels, features


def evaluate_split(opt, model, dataset, n_classes, device, progress='off'):
    """The trainers' evaluation of `dataset` (evaluation.evaluate) with their metric computer, whose k-means
    (nmi, f1) makes as many clusters as there are training classes, whatever split is evaluated; a split with
    query/gallery roles ranks its queries against its gallery, as the trainers do. Returns the
    evaluation.EvaluationResult."""
    import evaluation
    import metrics

    embedder, loader = embedder_and_loader(opt, model, dataset, device, progress)
    computer = metrics.MetricComputer(opt.evaluation_metrics, opt, n_classes=n_classes)
    return evaluation.evaluate(loader, embedder=embedder, metric_computer=computer, evaltypes=opt.evaltypes,
                               n_threads=opt.kernels)


def select_device():
    return torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')


# ------------------------------------------------------------------------------------------------

def prepare(cli):
    """Everything that can fail on the user's input, before any embedding is computed."""
    path = resolve_checkpoint(cli.checkpoint)
    checkpoint = load_checkpoint(path)
    opt = evaluation_options(checkpoint['opt'], cli)
    validate_metrics(opt.evaluation_metrics, opt)
    if cli.n_queries < 1 or cli.n_neighbours < 1:
        raise EvaluationError('--n_queries and --n_neighbours must be at least 1')
    for flag in ('json', 'export_embeddings', 'retrieval_figure'):
        target = getattr(cli, flag)
        if target and not os.path.isdir(os.path.dirname(os.path.abspath(target))):
            raise EvaluationError('--{} {}: the folder {} does not exist'.format(
                flag, target, os.path.dirname(os.path.abspath(target))))
    dataset, n_classes = build_split(opt, cli.split)
    device = select_device()
    model = build_network(opt, checkpoint['state_dict'], device)
    return path, checkpoint, opt, dataset, n_classes, model, device


def export_onnx(cli):
    """--export_onnx: the network of the checkpoint as ONNX; returns a dict like `run`'s."""
    from evaluation import onnx_export
    from utilities.search_index import fingerprint
    target = cli.export_onnx
    if not os.path.isdir(os.path.dirname(os.path.abspath(target))):
        raise EvaluationError('--export_onnx {}: the folder {} does not exist'.format(
            target, os.path.dirname(os.path.abspath(target))))
    path = resolve_checkpoint(cli.checkpoint)
    checkpoint = load_checkpoint(path)
    opt = evaluation_options(checkpoint['opt'], cli)
    model = build_network(opt, checkpoint['state_dict'], torch.device('cpu'))
    identity = {'arch': opt.arch, 'embed_dim': int(opt.embed_dim), 'dataset': opt.dataset,
                'checkpoint': os.path.abspath(path), 'epoch': checkpoint_epoch(checkpoint),
                'fingerprint': fingerprint(checkpoint['state_dict'])}
    preprocessing = onnx_export.export(model, opt, target, identity)
    print('ONNX model of {} (epoch {}) written to {}: input images N x {} x {} x {}, output embeddings N x {} ({})'
          .format(path, identity['epoch'], target, *preprocessing['input_size'], opt.embed_dim,
                  preprocessing['output']))
    return {'checkpoint': os.path.abspath(path), 'epoch': identity['epoch'], 'onnx': os.path.abspath(target),
            'preprocessing': preprocessing}


def run(cli, prepared=None):
    """Evaluate; returns a dict with the checkpoint, epoch, split and metrics."""
    import evaluation
    from evaluation import export, retrieval_figure

    path, checkpoint, opt, dataset, n_classes, model, device = prepared or prepare(cli)
    epoch = checkpoint_epoch(checkpoint)
    print('Checkpoint {} (epoch {}), split {} ({} images)'.format(path, epoch, cli.split, len(dataset)))
    evaluated = evaluate_split(opt, model, dataset, n_classes, device, cli.progress)
    paths = [entry[0] for entry in dataset.image_paths]
    query_gallery = getattr(dataset, 'query_gallery', None)
    print(evaluation.result_block(evaluated.metrics), end='')
    first = opt.evaltypes[0]
    features = {e: f.numpy().astype(np.float32, copy=False) for e, f in evaluated.features.items()}
    labels = evaluated.labels.numpy()
    result = {'checkpoint': os.path.abspath(path), 'epoch': epoch, 'split': cli.split,
              'metrics': {e: {k: float(v) for k, v in values.items()} for e, values in evaluated.metrics.items()}}
    if cli.json:
        export.write_json(result, cli.json)
        print('Metrics written to {}'.format(cli.json))
    if cli.export_embeddings:
        export.write_embeddings(cli.export_embeddings, features, labels, paths, epoch, opt, cli.split,
                                dataset.conversion, path, query_gallery)
        print('Embeddings written to {}'.format(cli.export_embeddings))
    if cli.retrieval_figure:
        retrieval_figure.save_retrieval_figure(features[first], labels, paths, dataset.conversion,
                                               cli.retrieval_figure, n_queries=cli.n_queries,
                                               n_neighbours=cli.n_neighbours, seed=cli.figure_seed,
                                               query_gallery=query_gallery)
        print('Retrieval figure written to {}'.format(cli.retrieval_figure))
    return result


def main(argv=None):
    from runtime import process
    process.global_setup()
    cli = build_parser().parse_args(argv)
    if cli.export_onnx:
        try:
            return export_onnx(cli)
        except Exception as error:  # the user's input (paths, checkpoint): one line, no traceback
            fail(error)
    try:
        prepared = prepare(cli)
    except Exception as error:  # the user's input (paths, checkpoint, flags): one line, no traceback
        fail(error)
    try:
        return run(cli, prepared)
    except (EvaluationError, OSError) as error:  # e.g. an output folder that does not exist
        fail(error)


def fail(error):
    if os.environ.get('DML_TRACEBACK') == '1':
        raise error
    print('error: {}'.format(error if str(error) else type(error).__name__), file=sys.stderr)
    sys.exit(2)
