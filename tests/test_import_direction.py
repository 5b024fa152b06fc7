"""The package's imports flow one way: data -> models -> losses -> training ->
inference -> export; inference and models never import training, and no
module imports itself back through others (function-level imports count)."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "msbert_tf")


def _imports():
    graph = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
            module = module[: -len(".__init__")] if module.endswith(".__init__") else module
            targets = set()
            for node in ast.walk(ast.parse(open(path).read())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("msbert_tf"):
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        targets.add(full if os.path.exists(_path(full)) else node.module)
                elif isinstance(node, ast.Import):
                    targets |= {a.name for a in node.names if a.name.startswith("msbert_tf")}
            graph[module] = {t for t in targets if t != module and t != "msbert_tf"}
    return graph


def _path(module):
    base = os.path.join(os.path.dirname(PACKAGE), *module.split("."))
    return base + ".py" if os.path.exists(base + ".py") else os.path.join(base, "__init__.py")


def test_inference_and_models_do_not_import_training():
    wrong = {
        (m, t) for m, targets in _imports().items() for t in targets
        if m.split(".")[1:2] in (["inference"], ["models"]) and t.startswith("msbert_tf.training")
    }
    assert not wrong, sorted(wrong)


def test_no_import_cycles():
    graph = _imports()
    cycles = []

    def visit(module, stack):
        for target in graph.get(module, ()):
            if target in stack:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in done:
                visit(target, stack + [target])
        done.add(module)

    done = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert not cycles, cycles[:5]
