"""The package's import graph runs one way: a module never imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import sigmarec

LAYERS = ["files", "parallel", "memory", "config", "data", "models", "runs", "evaluate", "train", "serve", "commands", "cli"]
ROOT = Path(sigmarec.__file__).resolve().parent


def layer_of(module: str) -> int | None:
    """Layer index of ``sigmarec.X...`` (None for the package itself and ``__main__``)."""
    parts = module.split(".")
    if parts[0] != "sigmarec" or len(parts) < 2 or parts[1] in ("__init__", "__main__"):
        return None
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module}: not in a known layer; add it to LAYERS in the right place")
    return LAYERS.index(parts[1])


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every sigmarec import in a file, including those inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
    return [(line, m) for line, m in out if m.split(".")[0] == "sigmarec"]


def test_no_module_imports_a_higher_layer():
    violations = []
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        module = "sigmarec." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = layer_of(module)
        if own is None:
            continue
        for line, target in imports_of(path):
            layer = layer_of(target)
            if layer is not None and layer > own:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[own]}) imports {target} ({LAYERS[layer]})")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sigmarec.train.trainer import Trainer\n")
    assert imports_of(bad) == [(2, "sigmarec.train.trainer")]
    assert layer_of("sigmarec.train.trainer") > layer_of("sigmarec.evaluate.paired")


def test_the_cli_and_the_model_names_load_without_torch():
    """`sigmarec --help` and the registry's names import no model (and no torch): the help is instant."""
    import subprocess
    import sys

    code = ("import sys, sigmarec.cli; from sigmarec.models import MODELS; assert len(list(MODELS)) > 10; "
            "sigmarec.cli.build_parser(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_registered_model_resolves():
    from sigmarec.models import MODELS, SequentialRecommender

    for name in MODELS:
        cls = MODELS[name]
        assert issubclass(cls, SequentialRecommender) and hasattr(cls, "config_class"), name
