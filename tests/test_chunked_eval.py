"""Evaluation over item chunks (eval.item_chunk): the same metrics, coverage included, as scoring whole rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sigmarec.config import ConfigError, EvalConfig, ProtocolConfig
from sigmarec.data.protocols import leave_one_out
from sigmarec.data.sequences import SequenceData
from sigmarec.evaluate.evaluator import evaluate
from sigmarec.models import MODELS


def make_data(n_users=60, n_items=37, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 15, n_users)
    items = rng.integers(1, n_items + 1, lengths.sum())
    items[:5] = [4, 4, 9, 4, 9]  # repeats: a target inside its own history
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return SequenceData(items, offsets, np.array([f"u{i}" for i in range(n_users)], dtype=object),
                        np.array(["<pad>"] + [f"i{i}" for i in range(1, n_items + 1)], dtype=object))


def model_of(name, n_items, **extra):
    cls = MODELS[name]
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    values = {"hidden_size": 16, "n_layers": 1, "n_heads": 2, **extra}
    torch.manual_seed(0)
    return cls(dataclasses.replace(cls.config_class(), **{k: v for k, v in values.items() if k in fields}), n_items, 20).eval()


@pytest.mark.parametrize("name", ["sasrec", "comirec_sa"])  # one vector, and the max over K interests
@pytest.mark.parametrize("exclude", [True, False])
def test_chunked_ranking_equals_whole_rows(name, exclude, one_thread):
    data = make_data()
    split = leave_one_out(data, ProtocolConfig(), max_len=20)
    model = model_of(name, data.n_items)
    whole = evaluate(model, data, split.test, EvalConfig(ks=[1, 5, 10], exclude_history=exclude), max_len=20)
    for chunk in (1, 7, 1000):
        chunked = evaluate(model, data, split.test, EvalConfig(ks=[1, 5, 10], exclude_history=exclude, item_chunk=chunk,
                                                               batch_size=16), max_len=20)
        assert chunked == pytest.approx(whole), chunk


def test_chunked_ranking_refuses_what_it_cannot_reproduce():
    data = make_data()
    split = leave_one_out(data, ProtocolConfig(), max_len=20)

    class OwnScores(type(model_of("sasrec", data.n_items))):
        def score_all(self, inputs, **context):
            return super().score_all(inputs, **context) * -1

    model = OwnScores(model_of("sasrec", data.n_items).cfg, data.n_items, 20).eval()
    with pytest.raises(ConfigError, match="item_chunk"):
        evaluate(model, data, split.test, EvalConfig(item_chunk=8), max_len=20)
