"""The Python entry points: sigmarec.train in one line, histories as a DataFrame, the version."""

from __future__ import annotations

import logging

import pandas as pd

import sigmarec
from sigmarec.serve.recommender import Recommender

from conftest import run_cli


def test_train_in_one_line_returns_the_run_and_leaves_logging_as_it_was(tmp_path, one_thread):
    handlers = list(logging.getLogger("sigmarec").handlers)
    run = sigmarec.train("sasrec", out=tmp_path / "run", train={"epochs": 2, "progress": False},
                         model={"hidden_size": 16, "n_layers": 1},
                         data={"synthetic_users": 100, "cache_dir": str(tmp_path / "cache")})
    assert run.run_dir == tmp_path / "run" and (run.run_dir / "metrics.json").exists()
    assert "ndcg@20" in run.metrics["test"] and run.model is not None and run.cfg.model_name == "sasrec"
    assert logging.getLogger("sigmarec").handlers == handlers


def test_histories_as_a_dataframe(tmp_path, one_thread):
    run = sigmarec.train("sasrec", out=tmp_path / "run", verbose=False, train={"epochs": 1, "progress": False},
                         model={"hidden_size": 16, "n_layers": 1},
                         data={"synthetic_users": 100, "cache_dir": str(tmp_path / "cache")})
    rec = Recommender(run)
    a, b, c = (str(run.data.item_ids[i]) for i in (1, 2, 3))
    frame = pd.DataFrame({"who": ["x", "y", "x", "x"], "item": [c, a, a, b], "t": [3, 1, 1, 2]})
    out = rec.recommend_frame(frame, k=4, user_col="who", time_col="t")
    assert list(out.columns) == ["user", "rank", "item", "score"] and set(out["user"]) == {"x", "y"}
    assert out[out["user"] == "x"]["item"].tolist() == [i for i, _ in rec.recommend([a, b, c], 4)]


def test_version():
    assert run_cli("--version").stdout.strip() == f"sigmarec {sigmarec.__version__}"
