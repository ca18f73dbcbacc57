"""Interest diagnostics: NMI on hand-checkable cases, batched per-user statistics, the CLI report."""

import json
import math

import numpy as np
import pytest
import torch

from sigmarec.data.protocols import EvalSet
from sigmarec.data.sequences import SequenceData
from sigmarec.evaluate.interests import (
    check_interest_model,
    normalized_mutual_info,
    random_baseline_nmi,
    user_interests,
)
from sigmarec.models.sasrec import SASRec, SASRecConfig
from sigmarec.runs import make_config
from sigmarec.train.trainer import Trainer

from conftest import run_cli


def entropy(p):
    return -sum(x * math.log(x) for x in p if x > 0)


# ------------------------------------------------------------------------------------ NMI
def test_nmi_identical_and_relabelled():
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    assert normalized_mutual_info(a, a) == pytest.approx(1.0)
    assert normalized_mutual_info(a, np.array([5, 5, 9, 9, 1, 1, 1])) == pytest.approx(1.0)
    assert normalized_mutual_info(a, np.array(["x", "x", "y", "y", "z", "z", "z"], dtype=object)) == pytest.approx(1.0)


def test_nmi_independent_is_zero():
    assert normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    assert normalized_mutual_info(rng.integers(0, 5, 50_000), rng.integers(0, 7, 50_000)) < 0.002


def test_nmi_by_hand():
    # a = [0,0,1,1], b = [0,0,0,1]: I = H(b) - H(b|a) = H(3/4, 1/4) - 1/2 * ln 2, H(a) = ln 2
    a, b = [0, 0, 1, 1], [0, 0, 0, 1]
    hb = entropy([0.75, 0.25])
    expected = (hb - 0.5 * math.log(2)) / ((math.log(2) + hb) / 2)
    assert normalized_mutual_info(a, b) == pytest.approx(expected, rel=1e-12)
    assert normalized_mutual_info(b, a) == pytest.approx(expected, rel=1e-12)
    # a 3 x 2 contingency table: [[2, 0], [1, 1], [0, 2]] over 6 items
    a, b = [0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1]
    ha, hb = math.log(3), math.log(2)
    h_b_given_a = (2 / 6) * math.log(2)  # only the middle row is uncertain
    assert normalized_mutual_info(a, b) == pytest.approx((hb - h_b_given_a) / ((ha + hb) / 2), rel=1e-12)


def test_nmi_single_cluster_has_no_nan():
    assert normalized_mutual_info([3, 3, 3], [1, 1, 1]) == 1.0
    value = normalized_mutual_info([0, 0, 0, 0], [0, 1, 0, 1])
    assert value == 0.0 and not math.isnan(value)
    with pytest.raises(ValueError, match="equal length"):
        normalized_mutual_info([0, 1], [0, 1, 2])


def test_random_baseline_is_low_and_keeps_sizes():
    truth = np.repeat(np.arange(8), 250)
    assert normalized_mutual_info(truth, truth) == 1.0
    baseline = random_baseline_nmi(truth, truth, n_perm=3, seed=1)
    assert 0.0 <= baseline < 0.02
    assert baseline == random_baseline_nmi(truth, truth, n_perm=3, seed=1)  # fixed seed: reproducible


# ------------------------------------------------------------------------------------ per-user statistics
class FixedCategories(torch.nn.Module):
    """Duck-typed model: items 1..4 in learned categories 0, 0, 1, 2 (K = 3), no interest_intensities."""

    def item_category_probs(self) -> torch.Tensor:
        return torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.1, 0.7, 0.2], [0.0, 0.1, 0.9]])


def test_user_interests_batched_by_hand():
    # users: [1, 2, 1] (one category), [1, 3, 4] (three), [4, 4, 2, 3] (three); max_len 2 keeps the last two items
    data = SequenceData(items=np.array([1, 2, 1, 1, 3, 4, 4, 4, 2, 3]), offsets=np.array([0, 3, 6, 10]),
                        user_ids=np.array(["a", "b", "c"], dtype=object),
                        item_ids=np.array(["<pad>", "w", "x", "y", "z"], dtype=object))
    cases = EvalSet(np.arange(3), data.offsets[:-1], data.offsets[1:], np.zeros(3, dtype=np.int64))
    intensities, hard = user_interests(FixedCategories(), data, cases, max_len=10, device=torch.device("cpu"), batch_size=2)
    assert hard.tolist() == [1, 3, 3]
    probs = FixedCategories().item_category_probs().numpy()
    assert intensities[0] == pytest.approx(probs[[1, 2, 1]].mean(0))
    assert intensities[2] == pytest.approx(probs[[4, 4, 2, 3]].mean(0))
    assert intensities.sum(1) == pytest.approx(np.ones(3))
    _, hard = user_interests(FixedCategories(), data, cases, max_len=2, device=torch.device("cpu"))
    assert hard.tolist() == [1, 2, 2]  # [2, 1] -> {0}, [3, 4] -> {1, 2}, [2, 3] -> {0, 1}


def test_model_without_categories_is_named():
    model = SASRec(SASRecConfig(hidden_size=8), n_items=5, max_len=4)
    with pytest.raises(ValueError, match=r"item_category_probs.*'sasrec' \(SASRec\)"):
        check_interest_model(model, "sasrec")


# ------------------------------------------------------------------------------------ end to end
def train_tiny(tmp_path, overrides, model):
    overrides["data"]["synthetic_users"] = 200
    overrides["train"].update({"epochs": 1, "num_threads": 1})
    cfg = make_config(model, overrides)
    out = tmp_path / model
    Trainer(cfg, out).fit()
    return out, cfg


def test_interests_report_end_to_end(tmp_path, tiny_overrides, one_thread):
    run_dir, cfg = train_tiny(tmp_path, tiny_overrides, "sigma")
    out = tmp_path / "report"
    proc = run_cli("interests", str(run_dir), "--out", str(out), "--top", "5")
    assert "NMI" in proc.stderr
    for name in ("interests.md", "interests.json", "intensities.png", "hard_interests.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "intensities.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind
    report = json.loads((out / "interests.json").read_text())
    k = cfg.model.n_interests
    assert report["nmi"]["known_column"] == "category" and 0.0 <= report["nmi"]["value"] <= 1.0
    assert 0.0 <= report["nmi"]["random_baseline"] <= 1.0
    assert len(report["category_sizes"]) == k and sum(report["category_sizes"]) == report["n_items"]
    assert all(len(c["top_items"]) == 5 for c in report["categories"])
    assert report["categories"][0]["top_items"][0]["name"].startswith("c")  # synthetic names: c<category>-item<rank>
    hard = report["hard_interests"]
    assert 1 <= hard["min"] <= hard["max"] <= k
    assert sum(hard["counts"].values()) == report["n_users"]
    assert sum(report["intensity"]["mean_by_category"]) == pytest.approx(1.0, abs=1e-5)
    markdown = (out / "interests.md").read_text()
    assert "NMI" in markdown and "intensities.png" in markdown and "### Category 0" in markdown


def test_interests_rejects_model_without_categories(tmp_path, tiny_overrides, one_thread):
    run_dir, _ = train_tiny(tmp_path, tiny_overrides, "sasrec")
    proc = run_cli("interests", str(run_dir), check=False)
    assert proc.returncode == 2
    assert "item_category_probs" in proc.stderr and "'sasrec'" in proc.stderr
    assert not (run_dir / "interests").exists()
