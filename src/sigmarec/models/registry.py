"""Models by name: the one place a new model is registered."""

from __future__ import annotations

from sigmarec.models.base import SequentialRecommender
from sigmarec.models.gru4rec import GRU4Rec
from sigmarec.models.sasrec import SASRec
from sigmarec.models.sigma import SIGMA

MODELS: dict[str, type[SequentialRecommender]] = {
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "sigma": SIGMA,
}


def get_model_class(name: str) -> type[SequentialRecommender]:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None
