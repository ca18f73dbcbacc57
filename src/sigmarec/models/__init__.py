"""Sequential recommendation models; see ``registry.MODELS``. Importing the package imports no model (and no torch)
until one is used."""

from sigmarec.models.registry import MODELS, get_model_class

__all__ = ["MODELS", "SequentialRecommender", "get_model_class"]


def __getattr__(name: str):
    if name == "SequentialRecommender":
        from sigmarec.models.base import SequentialRecommender

        return SequentialRecommender
    raise AttributeError(f"module 'sigmarec.models' has no attribute {name!r}")
