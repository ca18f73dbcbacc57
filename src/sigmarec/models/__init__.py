"""Sequential recommendation models; see ``registry.MODELS``."""

from sigmarec.models.base import SequentialRecommender
from sigmarec.models.registry import MODELS, get_model_class

__all__ = ["MODELS", "SequentialRecommender", "get_model_class"]
