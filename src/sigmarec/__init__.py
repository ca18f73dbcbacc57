"""sigmarec: sequential recommendation with SIGMA and the models of its research line, one pipeline, one protocol.

``sigmarec.train("sasrec", dataset="office", train={"epochs": 50})`` trains a run and returns it; the command line
is ``sigmarec``. Importing the package has no side effects (no logging set-up, no torch import).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sigmarec")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    if name == "train":  # the training package, callable: sigmarec.train("sasrec", ...) (see sigmarec/train/__init__.py)
        import importlib

        return importlib.import_module("sigmarec.train")
    raise AttributeError(f"module 'sigmarec' has no attribute {name!r}")
