"""The packages form layers: each imports only packages of lower layers (function-level imports included), so
no folder depends on one above it and no two folders depend on each other. Read from the source with `ast`;
nothing is imported."""
import ast
import collections
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# lowest first; a package may import the packages of the layers below its own, never its own layer's others
LAYERS = (
    ('runtime', 'parameters'),        # devices, data parallelism, precision, process set-up; the flags
    ('utilities',),                   # atomic writes, the logger, progress; results tables, the sweep launcher
    ('architectures', 'batch_mining'),
    ('criteria', 'datasets'),
    ('metrics', 'datasampler'),
    ('evaluation',),
    ('training',),
    ('main', 'main_original', 'evaluate', 'Result_Evaluations',      # entry points; the command-line tools
     'utilities.tune', 'utilities.search'),                          # of utilities/ that train or embed
    ('bench',),                                                      # benchmarks may time any entry point
    ('tests',),
)

# (importing file, imported module): upward imports still to be removed, each with its reason
ALLOWED_UPWARD = set()

# third-party modules the bottom layer may use besides the standard library
RUNTIME_THIRD_PARTY = {'numpy', 'torch', 'timm'}  # timm lazily, for its BatchNorm + activation layer


def layer_of():
    return {unit: index for index, units in enumerate(LAYERS) for unit in units}


def python_files():
    for directory, folders, files in os.walk(ROOT):
        folders[:] = sorted(folder for folder in folders if not folder.startswith(('.', '__')))
        for name in sorted(files):
            if name.endswith('.py'):
                yield os.path.relpath(os.path.join(directory, name), ROOT).replace(os.sep, '/')


# sub-packages that are command-line tools standing above the trainers, each a unit of its own
TOOL_PACKAGES = ('utilities.tune', 'utilities.search')


def unit_of(path):
    """The package (top folder), tool sub-package or top-level module a file belongs to."""
    return unit_of_module(path[:-len('.py')].replace('/', '.'))


def unit_of_module(module):
    """The unit a dotted module name belongs to: a tool sub-package, else its top-level name."""
    for tool in TOOL_PACKAGES:
        if module == tool or module.startswith(tool + '.'):
            return tool
    return module.split('.')[0]


def imported_modules(path):
    """Every absolute module name a file imports, at any depth (inside functions too)."""
    with open(os.path.join(ROOT, path), encoding='utf-8') as handle:
        tree = ast.parse(handle.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            for alias in node.names:  # `from training import distributed` imports training.distributed
                yield '{}.{}'.format(node.module, alias.name)


def import_edges():
    """{(importing unit, imported unit): [(file, module), ...]} between different units of the project."""
    units = {unit_of(path) for path in python_files()}
    edges = collections.defaultdict(list)
    for path in python_files():
        source = unit_of(path)
        for module in imported_modules(path):
            target = unit_of_module(module)
            if target in units and target != source:
                edges[(source, target)].append((path, module))
    return edges


def allowed(path, module):
    """Listed in ALLOWED_UPWARD, as the module or as a name imported from it."""
    return (path, module) in ALLOWED_UPWARD or (path, module.rsplit('.', 1)[0]) in ALLOWED_UPWARD


def violations(edges, layers):
    """The imports that do not go strictly downward, less the allowed ones."""
    found = []
    for (source, target), sites in sorted(edges.items()):
        if layers[target] >= layers[source]:
            found += [(path, module) for path, module in sites if not allowed(path, module)]
    return sorted(set(found))


def test_every_package_and_top_level_module_has_a_layer():
    units = {unit_of(path) for path in python_files()}
    assert units - set(layer_of()) == set(), 'add the new package to LAYERS'


def test_every_import_goes_to_a_lower_layer():
    found = violations(import_edges(), layer_of())
    assert found == [], '\n'.join('{} imports {} (same or higher layer)'.format(*site) for site in found)


def test_no_two_folders_import_each_other_apart_from_the_listed_exceptions():
    edges = import_edges()
    allowed_files = {path for path, _ in ALLOWED_UPWARD}
    pairs = {(source, target) for (source, target), sites in edges.items()
             if any(path not in allowed_files for path, _ in sites)}
    assert sorted(pair for pair in pairs if pair[::-1] in pairs) == []


def test_the_listed_exceptions_still_exist():
    """An exception whose import is gone must leave the list, so the list never hides a new upward import."""
    sites = {site for found in import_edges().values() for site in found}
    assert {allowed for allowed in ALLOWED_UPWARD if allowed not in sites} == set()


def test_runtime_imports_only_the_standard_library_numpy_and_torch():
    allowed = set(sys.stdlib_module_names) | RUNTIME_THIRD_PARTY | {'runtime'}
    imports = {(path, module) for path in python_files() if unit_of(path) == 'runtime'
               for module in imported_modules(path)}
    assert {(path, module) for path, module in imports if module.split('.')[0] not in allowed} == set()


@pytest.mark.parametrize('edge', [('runtime', 'training'), ('metrics', 'datasampler'), ('datasets', 'criteria')])
def test_an_upward_or_sideways_import_is_found(edge):
    edges = {edge: [('{}/x.py'.format(edge[0]), '{}.y'.format(edge[1]))]}
    assert violations(edges, layer_of()) == [('{}/x.py'.format(edge[0]), '{}.y'.format(edge[1]))]


def test_imports_inside_functions_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], 'ROOT', str(tmp_path))
    (tmp_path / 'module.py').write_text('def f():\n    from training import distributed\n')
    assert set(imported_modules('module.py')) == {'training', 'training.distributed'}


def layer_report():
    """`package -> what it imports`, lowest layer first (printed by `python tests/test_layers.py`)."""
    edges = import_edges()
    lines = []
    for units in LAYERS:
        for unit in units:
            targets = sorted({target for (source, target) in edges if source == unit}, key=lambda t: layer_of()[t])
            lines.append('{} -> {}'.format(unit, ', '.join(targets) or '(stdlib and third-party only)'))
    return '\n'.join(lines)


if __name__ == '__main__':
    print(layer_report())
