"""What a run tells its user: the end summary says why it stopped and whether it was still improving; curves.png."""

from __future__ import annotations

from types import SimpleNamespace

from sigmarec.train.report import end_summary

TC = SimpleNamespace(patience=3, epochs=10, valid_metric="ndcg@20")


def test_end_summary_names_early_stop_budget_and_still_improving():
    early = end_summary({"epoch": 8, "best_epoch": 5, "best_value": 0.1, "bad_epochs": 3}, TC, True)
    assert "stopped early at epoch 8" in early and "restored the best checkpoint (epoch 5" in early
    assert "still improving" not in early
    budget = end_summary({"epoch": 10, "best_epoch": 10, "best_value": 0.2, "bad_epochs": 0}, TC, True)
    assert "reached the epoch budget (10 of 10)" in budget and "still improving at its last epoch" in budget
    plateau = end_summary({"epoch": 10, "best_epoch": 9, "best_value": 0.2, "bad_epochs": 1}, TC, True)
    assert "still improving" not in plateau


def test_a_run_writes_its_curves(tmp_path, one_thread):
    import sigmarec

    run = sigmarec.train("sasrec", out=tmp_path / "run", verbose=False, train={"epochs": 2, "progress": False},
                         model={"hidden_size": 16, "n_layers": 1}, data={"synthetic_users": 80, "cache_dir": str(tmp_path / "c")})
    png = run.run_dir / "curves.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
