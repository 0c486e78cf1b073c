"""`evaluate.py --export_onnx <file>`: the trained embedding network as an ONNX model.

The graph maps `images` (float32 N×3×H×W, already preprocessed: N is dynamic, H×W the evaluation crop) to
`embeddings` (float32 N×D), the network's own embedding: L2-normalised inside the graph when the backbone
normalises (an `_normalize` --arch), raw otherwise. The preprocessing a caller must apply first is in the
model's metadata (`metadata_props`), read off the framework's own evaluation pipeline
(evaluation.preprocessing): `preprocessing` (all of it as JSON) and one key per fact (input_size, resize,
resize_mode, crop, interpolation, mean, std, channel_order, pixel_scale, embedding), beside the model's
identity (arch, embed_dim, checkpoint, epoch, the weights' fingerprint of utilities.search).

Exported with torch's dynamo-based exporter (onnxscript), falling back to the TorchScript-based one where
the dynamo export fails; `onnx.checker` validates the result before it is written (atomically).
"""
import io
import json

import torch

INPUT, OUTPUT = 'images', 'embeddings'
OPSET = 18


class EmbeddingGraph(torch.nn.Module):
    """The network's embedding alone (the first element of its (embedding, features) output)."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, images):
        output = self.network(images)
        return output[0] if isinstance(output, (tuple, list)) else output


def onnx_bytes(network, input_size, exporter='dynamo'):
    """The serialised ONNX model of `network`'s embedding for inputs 3×H×W = `input_size`, batch dynamic."""
    graph = EmbeddingGraph(network).eval()
    example = torch.zeros(2, *input_size)
    if exporter == 'dynamo':
        try:
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=({0: torch.export.Dim('batch')},), opset_version=OPSET,
                                        verbose=False)
            return program.model_proto.SerializeToString()
        except Exception:  # an operator the dynamo exporter cannot translate: the TorchScript-based exporter
            pass
    buffer = io.BytesIO()
    torch.onnx.export(graph, (example,), buffer, dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: 'batch'}, OUTPUT: {0: 'batch'}}, opset_version=17)
    return buffer.getvalue()


def with_metadata(model_bytes, metadata):
    """The model with `metadata` ({key: JSON-able value}) as its metadata_props, checked by onnx.checker."""
    import onnx
    model = onnx.load_from_string(model_bytes)
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def metadata_of(opt, preprocessing, identity):
    facts = {'preprocessing': json.dumps(preprocessing, sort_keys=True)}
    for key in ('input_size', 'resize', 'resize_mode', 'crop', 'interpolation', 'mean', 'std', 'channel_order',
                'pixel_scale'):
        facts[key] = preprocessing[key]
    facts['embedding'] = preprocessing['output']
    facts.update({key: value for key, value in identity.items() if value is not None})
    facts['input'] = ('{}: float32 N x {} x {} x {}, RGB decoded, resized and cropped as `resize`/`crop` say, '
                      'scaled to [0, 1], (x - mean) / std per channel, channels reversed when channel_order is '
                      'BGR'.format(INPUT, *preprocessing['input_size']))
    facts['output'] = '{}: float32 N x {} ({})'.format(OUTPUT, opt.embed_dim, preprocessing['output'])
    return facts


def export(network, opt, path, identity, exporter='dynamo'):
    """Write the ONNX file of `network` (eval mode, on the CPU) with the preprocessing of `opt`'s evaluation."""
    from evaluation.export import write_bytes
    from evaluation.preprocessing import describe
    preprocessing = describe(opt)
    network = network.to('cpu').eval()
    model = with_metadata(onnx_bytes(network, preprocessing['input_size'], exporter),
                          metadata_of(opt, preprocessing, identity))
    write_bytes(model, path)
    return preprocessing
