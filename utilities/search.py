"""Search a collection of images with a trained model: `python -m utilities.search build|add|query`.

    build --checkpoint <run folder or checkpoint> --images <folder or CSV> --out <index file>
          [--approximate ivf|hnsw]   embeds every image (batched, a progress bar, the GPU when there is one)
                                     into a Faiss index saved with the paths, labels and the model's identity;
                                     an approximate index prints its recall@k against exact search
    add   --index <index file> --checkpoint <same model> --images <folder or CSV>
    query --index <index file> <image>... [--k 10] [--figure out.png] [--json]

Images: a folder is searched recursively for image files (the first-level sub-folder is an image's label;
images directly in the folder have none); a CSV in open-metric-learning's format contributes every row
(label, crop box) whatever its split. Queries are embedded by the model that built the index (its
checkpoint as recorded, or `--checkpoint` when it has moved; other weights are refused). Bad input is
one line on stderr and exit code 2.
"""
import argparse
import json
import os
import sys
import types

import numpy as np

from utilities.search_index import KINDS, SavedIndex, SearchError, fingerprint, new_index, recall_against_exact, search

NEUTRAL_COLOUR = '#555555'


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m utilities.search',
                                     description='Build, extend and query a Faiss index of images embedded by a '
                                                 'trained model.')
    commands = parser.add_subparsers(dest='command', required=True)

    def embedding_flags(command):
        command.add_argument('--images', required=True,
                             help='A folder of images (searched recursively; sub-folder = label) or an OML CSV.')
        command.add_argument('--batch_size', type=int, default=0, help='Images per batch (default: the run\'s).')
        command.add_argument('--kernels', type=int, default=None, help='Data-loading workers (default: the run\'s).')
        command.add_argument('--progress', default='auto', choices=('auto', 'bar', 'log', 'off'),
                             help='Progress of the embedding pass.')

    build = commands.add_parser('build', help='Embed a collection into a new index file.')
    build.add_argument('--checkpoint', required=True, help='A run folder or checkpoint file of this framework.')
    embedding_flags(build)
    build.add_argument('--out', required=True, help='The index file to write.')
    build.add_argument('--approximate', default='exact', choices=KINDS[1:] + ('exact',),
                       help='An approximate index for large collections: ivf (inverted lists) or hnsw (graph); '
                            'default exact search.')
    build.add_argument('--nprobe', type=int, default=16, help='ivf: cells searched per query.')
    build.add_argument('--ef_search', type=int, default=128, help='hnsw: candidates kept while searching.')
    build.add_argument('--recall_k', type=int, default=10, help='k of the recall printed for an approximate index.')

    add = commands.add_parser('add', help='Embed more images into an existing index file.')
    add.add_argument('--index', required=True, help='The index file (rewritten).')
    add.add_argument('--checkpoint', required=True, help='The model that built the index.')
    embedding_flags(add)

    query = commands.add_parser('query', help='The nearest indexed images of each query image.')
    query.add_argument('--index', required=True, help='The index file.')
    query.add_argument('images', nargs='+', help='Query image files.')
    query.add_argument('--k', type=int, default=10, help='Neighbours per query.')
    query.add_argument('--checkpoint', default=None,
                       help='The model that built the index, when its recorded checkpoint has moved.')
    query.add_argument('--figure', default=None, metavar='OUT.png', help='Draw each query and its neighbours.')
    query.add_argument('--json', action='store_true', help='Print the results as JSON instead of text.')
    query.add_argument('--kernels', type=int, default=0, help='Data-loading workers.')
    query.add_argument('--batch_size', type=int, default=0, help='Images per batch (default: the run\'s).')
    return parser


# ------------------------------------------------------------------------------------------------
# the collection

def folder_images(folder):
    """(paths, labels) of every image under `folder` in sorted order; label = first-level sub-folder."""
    from datasets.image_check import is_image_name, image_problem
    paths, labels = [], []
    folder = os.path.abspath(folder)   # the index stays usable from any working directory
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith('.'))
        for name in sorted(files):
            if not is_image_name(name):
                continue
            path = os.path.join(root, name)
            problem = image_problem(path)
            if problem is not None:
                raise SearchError('--images: image {} {}'.format(path, problem))
            relative = os.path.relpath(path, folder).split(os.sep)
            paths.append(path)
            labels.append(relative[0] if len(relative) > 1 else '')
    return paths, labels


def collection(images):
    """(paths (crop boxes attached), boxes N×4 with -1 where none, labels) of a folder or an OML CSV."""
    from datasets import oml_csv
    from datasets.errors import DatasetError
    if os.path.isdir(images):
        paths, labels = folder_images(images)
    elif os.path.isfile(images) and images.lower().endswith('.csv'):
        try:
            rows = oml_csv.read_rows(images)
        except DatasetError as error:
            raise SearchError('--images: {}'.format(error)) from None
        paths, labels = [row.path for row in rows], [row.label for row in rows]
    else:
        raise SearchError('--images {}: neither a folder nor a .csv file'.format(images))
    if not paths:
        raise SearchError('--images {}: no image files found'.format(images))
    boxes = [getattr(path, 'box', (-1, -1, -1, -1)) for path in paths]
    return paths, boxes, labels


def with_boxes(paths, boxes):
    from datasets.boxes import BoxedPath
    return [BoxedPath(path, box) if box[0] >= 0 else path for path, box in zip(paths, boxes)]


# ------------------------------------------------------------------------------------------------
# the model

def load_model(checkpoint_path, kernels=None):
    """(options, network in eval mode, device, identity) of a checkpoint, through evaluate.py's loading."""
    from evaluation import checkpoint_eval
    path = checkpoint_eval.resolve_checkpoint(checkpoint_path)
    checkpoint = checkpoint_eval.load_checkpoint(path)
    cli = types.SimpleNamespace(source_path=None, evaluation_metrics=None, evaluate_on_gpu=False, kernels=kernels)
    opt = checkpoint_eval.evaluation_options(checkpoint['opt'], cli)
    device = checkpoint_eval.select_device()
    model = checkpoint_eval.build_network(opt, checkpoint['state_dict'], device)
    identity = {'fingerprint': fingerprint(checkpoint['state_dict']), 'checkpoint': os.path.abspath(path),
                'arch': opt.arch, 'embed_dim': int(opt.embed_dim), 'dataset': opt.dataset,
                'epoch': checkpoint_eval.checkpoint_epoch(checkpoint)}
    return opt, model, device, identity


def embed_images(opt, model, device, paths, progress='auto', batch_size=0):
    """float32 N×D embeddings of `paths` in order, with the evaluation transforms the model was evaluated with."""
    import copy
    from datasets.basic_dataset_scaffold import BaseDataset
    from evaluation import checkpoint_eval
    from evaluation.preprocessing import evaluation_pipeline
    opt = copy.copy(opt)
    if batch_size > 0:
        opt.eval_bs = batch_size
    dataset = BaseDataset({0: list(paths)}, opt, is_validation=True, pipeline=evaluation_pipeline(opt))
    _, features = checkpoint_eval.embed(opt, model, dataset, device, progress)
    return np.ascontiguousarray(features[opt.evaltypes[0]].numpy(), dtype=np.float32)


def check_same_model(saved, identity, checkpoint):
    if saved.model.get('fingerprint') != identity['fingerprint']:
        raise SearchError('--checkpoint {}: the index was built by another model ({}, --arch {}); its embeddings '
                          'cannot be searched with these weights'.format(checkpoint, saved.model.get('checkpoint'),
                                                                         saved.model.get('arch')))


# ------------------------------------------------------------------------------------------------
# commands

def command_build(args):
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise SearchError('--out {}: the folder {} does not exist'.format(args.out,
                                                                           os.path.dirname(os.path.abspath(args.out))))
    paths, boxes, labels = collection(args.images)
    opt, model, device, identity = load_model(args.checkpoint, args.kernels)
    vectors = embed_images(opt, model, device, paths, args.progress, args.batch_size)
    index = new_index(args.approximate, vectors, nprobe=args.nprobe, ef_search=args.ef_search)
    saved = SavedIndex(index, args.approximate, [str(p) for p in paths], boxes, labels, identity)
    saved.save(args.out)
    print('Indexed {} images ({} search, {} dimensions) into {}'.format(len(saved), args.approximate,
                                                                         vectors.shape[1], args.out))
    if args.approximate != 'exact':
        recall = recall_against_exact(index, vectors, args.recall_k)
        print('{} recall@{} against exact search: {:.4f} (over {} indexed images as queries)'.format(
            args.approximate, min(args.recall_k, len(vectors)), recall, min(1000, len(vectors))))
    return saved


def command_add(args):
    saved = SavedIndex.load(args.index)
    paths, boxes, labels = collection(args.images)
    opt, model, device, identity = load_model(args.checkpoint, args.kernels)
    check_same_model(saved, identity, args.checkpoint)
    vectors = embed_images(opt, model, device, paths, args.progress, args.batch_size)
    saved.add(vectors, [str(p) for p in paths], boxes, labels)
    saved.save(args.index)
    print('Added {} images to {} ({} in all)'.format(len(paths), args.index, len(saved)))
    return saved


def query_model(saved, checkpoint, kernels):
    recorded = saved.model.get('checkpoint')
    if checkpoint is None:
        if not recorded or not os.path.exists(recorded):
            raise SearchError('--index: the checkpoint that built it, {}, is gone; give it with --checkpoint'
                              .format(recorded))
        checkpoint = recorded
    opt, model, device, identity = load_model(checkpoint, kernels)
    check_same_model(saved, identity, checkpoint)
    return opt, model, device


def command_query(args):
    from datasets.image_check import image_problem
    if args.k < 1:
        raise SearchError('--k must be at least 1')
    saved = SavedIndex.load(args.index)
    for path in args.images:
        problem = image_problem(path)
        if problem is not None:
            raise SearchError('query image {} {}'.format(path, problem))
    if args.figure and not os.path.isdir(os.path.dirname(os.path.abspath(args.figure))):
        raise SearchError('--figure {}: the folder does not exist'.format(args.figure))
    opt, model, device = query_model(saved, args.checkpoint, args.kernels)
    vectors = embed_images(opt, model, device, args.images, 'off', args.batch_size)
    distances, rows = search(saved.index, vectors, args.k)
    results = [{'query': os.path.abspath(path),
                'neighbours': [{'rank': rank, 'path': saved.paths[row], 'label': saved.labels[row] or None,
                                'distance': float(distance)}
                               for rank, (row, distance) in enumerate(zip(found, dists), start=1) if row >= 0]}
               for path, found, dists in zip(args.images, rows, distances)]
    if args.json:
        print(json.dumps({'index': os.path.abspath(args.index), 'k': args.k, 'results': results}, indent=2))
    else:
        for result in results:
            print('query {}'.format(result['query']))
            for hit in result['neighbours']:
                print('  {:>3}  {:.4f}  {}{}'.format(hit['rank'], hit['distance'], hit['path'],
                                                    '  [{}]'.format(hit['label']) if hit['label'] else ''))
    if args.figure:
        write_query_figure(saved, results, rows, args.figure)
        if not args.json:
            print('Figure written to {}'.format(args.figure))
    return results


def write_query_figure(saved, results, rows, path):
    """Each query (left) and its neighbours, framed green/red by label when the query is itself indexed with
    a label, grey otherwise."""
    from evaluation.retrieval_figure import QUERY_COLOUR, RIGHT_COLOUR, WRONG_COLOUR, draw_grid, short, write_figure
    boxed = with_boxes(saved.paths, saved.boxes)
    label_of = {p: l for p, l in zip(saved.paths, saved.labels) if l}
    grid = []
    for result, found in zip(results, rows):
        query_label = label_of.get(result['query'])
        panels = [(result['query'], QUERY_COLOUR, 'query' + (': ' + short(query_label) if query_label else ''))]
        for hit, row in zip(result['neighbours'], found):
            colour = NEUTRAL_COLOUR if not query_label else RIGHT_COLOUR if hit['label'] == query_label \
                else WRONG_COLOUR
            panels.append((boxed[row], colour, '#{}: {} ({:.2f})'.format(hit['rank'], short(hit['label'] or ''),
                                                                         hit['distance'])))
        grid.append(panels)
    write_figure(draw_grid(grid, 'Queries (left) and their nearest indexed images (Euclidean distance)'), path)


COMMANDS = {'build': command_build, 'add': command_add, 'query': command_query}


def main(argv=None):
    from runtime import process
    process.global_setup()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Exception as error:  # the user's input (paths, index, checkpoint): one line, no traceback
        if os.environ.get('DML_TRACEBACK') == '1':
            raise
        print('error: {}'.format(str(error).splitlines()[0] if str(error) else type(error).__name__),
              file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
