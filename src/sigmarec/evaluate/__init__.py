"""Evaluation: full-ranking metrics and sampled negatives."""

from sigmarec.evaluate.negatives import sample_negatives, sampled_ranks
from sigmarec.evaluate.ranking import (
    CoverageCounter,
    mask_scores,
    metrics_from_ranks,
    multi_target_ranks,
    parse_metric,
    per_case_metric,
    target_ranks,
)

__all__ = [
    "CoverageCounter",
    "mask_scores",
    "metrics_from_ranks",
    "multi_target_ranks",
    "parse_metric",
    "per_case_metric",
    "sample_negatives",
    "sampled_ranks",
    "target_ranks",
]
