"""The HTTP service: answers equal the Recommender's, bad requests are 4xx naming the field, never a 5xx."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("faiss")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sigmarec.serve.app import create_app  # noqa: E402
from sigmarec.serve.export import export_run  # noqa: E402
from sigmarec.serve.recommender import Recommender  # noqa: E402

from conftest import train_tiny  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    train_tiny("sasrec", tmp, epochs=2, hidden_size=16, n_layers=1)
    export_run(tmp / "run", tmp / "exp", "exact")
    rec = Recommender.from_run(tmp / "run", device="cpu")
    exact = TestClient(create_app(tmp / "run", device="cpu"))
    faiss = TestClient(create_app(tmp / "run", device="cpu", index_dir=tmp / "exp"))
    return rec, exact, faiss


def test_answers_equal_the_recommender(served):
    rec, exact, faiss = served
    user = str(rec.data.user_ids[4])
    expected = [i for i, _ in rec.recommend_user(user, 7)]
    for client in (exact, faiss):
        body = client.post("/recommend", json={"user": user, "k": 7}).json()
        assert [x["item"] for x in body["items"]] == expected
    history = [str(rec.data.item_ids[i]) for i in (3, 9, 4)]
    body = exact.post("/recommend", json={"history": history, "k": 5}).json()
    assert [x["item"] for x in body["items"]] == [i for i, _ in rec.recommend(history, 5)]
    seen = exact.post("/recommend", json={"history": history, "k": 50, "exclude_seen": False}).json()
    assert set(history) & {x["item"] for x in seen["items"]}  # the history may come back when asked


def test_concurrent_requests_answer_as_serial_ones(served):
    """Concurrent POST /recommend requests are scored in shared batches; each still gets its own list."""
    from concurrent.futures import ThreadPoolExecutor

    rec, exact, _ = served
    bodies = [{"user": str(rec.data.user_ids[u]), "k": 3 + u % 5} for u in range(24)]
    bodies += [{"history": [str(rec.data.item_ids[i]) for i in (u + 1, u + 7)], "k": 4, "exclude_seen": u % 2 == 0}
               for u in range(12)]
    serial = [exact.post("/recommend", json=b).json() for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda b: exact.post("/recommend", json=b).json(), bodies))
    for p, q in zip(parallel, serial):  # the same items; scores to float32 rounding (another batch, another padding)
        assert [x["item"] for x in p["items"]] == [x["item"] for x in q["items"]] and p["skipped"] == q["skipped"]
        assert [x["score"] for x in p["items"]] == pytest.approx([x["score"] for x in q["items"]], rel=1e-5, abs=1e-6)
    assert sum(exact.app.state.batcher.batch_sizes) >= 2 * len(bodies)


def test_unknown_ids_are_404_or_skipped(served):
    rec, exact, _ = served
    assert exact.post("/recommend", json={"user": "nobody"}).status_code == 404
    known = str(rec.data.item_ids[5])
    r = exact.post("/recommend", json={"history": [known, "nope"]})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = exact.post("/recommend", json={"history": [known, "nope"], "unknown_items": "skip", "k": 3})
    assert r.status_code == 200 and r.json()["skipped"] == ["nope"] and len(r.json()["items"]) == 3
    batch = exact.post("/recommend/batch", json={"requests": [{"user": "nobody"}, {"history": [known], "k": 2}]}).json()
    assert "error" in batch["results"][0] and len(batch["results"][1]["items"]) == 2


@pytest.mark.parametrize("body,field", [
    ({"user": "0", "k": 0}, "k"), ({"user": "0", "k": 5000}, "k"), ({}, "user or history"),
    ({"user": "0", "history": ["1"]}, "user or history"), ({"history": []}, "at least one"),
    ({"user": "0", "unknown_items": "maybe"}, "unknown_items"), ({"user": 3.5}, "user"),
])
def test_bad_requests_are_422_naming_the_field(served, body, field):
    r = served[1].post("/recommend", json=body)
    assert r.status_code == 422 and field in r.text, r.text


def test_items_health_metadata(served):
    rec, exact, faiss = served
    item = str(rec.data.item_ids[7])
    assert exact.get(f"/items/{item}").json()["index"] == 7
    assert exact.get("/items/nope").status_code == 404
    assert exact.get("/health").json()["status"] == "ok"
    assert faiss.get("/metadata").json()["scoring"] == "faiss exact"


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
bodies = st.fixed_dictionaries({}, optional={"user": json_values, "history": json_values, "k": json_values,
                                             "exclude_seen": json_values, "new_session": json_values,
                                             "unknown_items": json_values})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies | json_values)
def test_no_request_body_gives_a_server_error(served, body):
    for path in ("/recommend", "/recommend/batch"):
        payload = {"requests": [body]} if path.endswith("batch") and isinstance(body, dict) else body
        assert served[1].post(path, json=payload).status_code < 500
