"""Models by name: the one place a new model is registered.

Each entry names the module and class; a model's module (and torch) is imported only when the model is asked for,
so listing the names (``sigmarec train --help``) costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from sigmarec.config import ConfigError

if TYPE_CHECKING:
    from sigmarec.models.base import SequentialRecommender

REGISTRY: dict[str, str] = {
    "sasrec": "sasrec:SASRec",
    "gru4rec": "gru4rec:GRU4Rec",
    "sigma": "sigma:SIGMA",
    "mind": "mind:MIND",
    "comirec_dr": "comirec:ComiRecDR",
    "comirec_sa": "comirec:ComiRecSA",
    "sine": "sine:SINE",
    "dss": "dss:DSS",
    "pop": "pop:Pop",
    "hrnn": "hrnn:HRNN",
    "gru4rec_session": "hrnn:SessionGRU4Rec",
    "hnvm": "hnvm:HNVM",
    "bert4rec": "bert4rec:BERT4Rec",
    "bprmf": "bprmf:BPRMF",
    "lightgcn": "lightgcn:LightGCN",
    "contrastvae": "contrastvae:ContrastVAE",
    "svae": "svae:SVAE",
    "dt4sr": "dt4sr:DT4SR",
    "acvae": "acvae:ACVAE",
}


class _Models(Mapping):
    """``MODELS[name]`` -> the model class, imported on first use; iterating gives the names in registry order."""

    def __getitem__(self, name: str) -> type[SequentialRecommender]:
        module, cls = REGISTRY[name].split(":")
        return getattr(importlib.import_module(f"sigmarec.models.{module}"), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


MODELS: Mapping[str, type[SequentialRecommender]] = _Models()


def get_model_class(name: str) -> type[SequentialRecommender]:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None
