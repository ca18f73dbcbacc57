"""``sigmarec serve RUN``: an HTTP service (FastAPI) over a trained run.

The model is loaded once; each request's histories are scored together on the model's device (a batch request
is one forward pass). Requests are validated by pydantic (a bad field is a 422 naming it); unknown ids are a 404
or, with ``unknown_items=skip``, dropped and listed in the response; nothing a client sends gives a 500. Scoring
is exact (``score_all``) or, with an exported index (``sigmarec export``), a FAISS search over the same vectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator

from sigmarec.config import SigmarecError, UnknownIdError
from sigmarec.evaluate.evaluator import history_scores
from sigmarec.models.inputs import inference_inputs
from sigmarec.serve.batching import RequestBatcher
from sigmarec.serve.recommender import Recommender

MAX_K = 1000


class RecommendRequest(BaseModel):
    """One recommendation: a known ``user`` (after the whole sequence) or a ``history`` of item ids, oldest first."""

    user: str | None = None
    history: list[str] | None = Field(default=None, max_length=10_000)
    k: int = Field(default=10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    new_session: bool = False
    unknown_items: Literal["error", "skip"] = "error"

    @model_validator(mode="after")
    def _one_source(self) -> "RecommendRequest":
        if (self.user is None) == (self.history is None):
            raise ValueError("give exactly one of user or history")
        if self.history is not None and not self.history:
            raise ValueError("history needs at least one item id")
        return self


class BatchRequest(BaseModel):
    requests: list[RecommendRequest] = Field(min_length=1, max_length=1000)


class Scored(BaseModel):
    item: str
    score: float


class RecommendResponse(BaseModel):
    items: list[Scored]
    skipped: list[str] = []


class Service:
    """What the endpoints call: request validation beyond the schema, id mapping and batched scoring."""

    def __init__(self, rec: Recommender, run_dir: str | Path, index_dir: str | Path | None = None) -> None:
        self.rec, self.run_dir = rec, Path(run_dir)
        self.index = None
        if index_dir is not None:
            from sigmarec.serve.retrieval import ItemIndex

            self.index = ItemIndex.load(index_dir)
            if self.index.n_items != rec.data.n_items:
                raise SigmarecError(f"{index_dir}: the index holds {self.index.n_items} items, the run {rec.data.n_items}")
        self._popularity = rec.data.item_popularity()

    def resolve(self, req: RecommendRequest) -> tuple[np.ndarray, int, list[str]]:
        """Internal item ids of the request's history, its internal user id (-1: none) and the skipped ids."""
        data = self.rec.data
        if req.user is not None:
            u = self.rec._user_index.get(req.user)
            if u is None:
                raise UnknownIdError(f"unknown user id {req.user!r}")
            return data.sequence(u), u, []
        index = self.rec._item_index
        ids = [index.get(i) for i in req.history]
        unknown = [i for i, j in zip(req.history, ids) if j is None]
        if unknown and req.unknown_items == "error":
            raise UnknownIdError(f"unknown item id(s) {unknown[:10]} (unknown_items=skip drops them)")
        known = np.asarray([j for j in ids if j is not None], dtype=np.int64)
        if len(known) == 0:
            raise UnknownIdError(f"no known item in history (skipped {unknown[:10]})")
        return known, -1, unknown

    def recommend_batch(self, reqs: list[RecommendRequest]) -> list[dict]:
        """Every request answered: the ones whose ids resolve are scored together, the others carry ``error``."""
        resolved, errors = [], {}
        for n, r in enumerate(reqs):
            try:
                resolved.append((n, self.resolve(r)))
            except UnknownIdError as exc:
                errors[n] = {"error": str(exc).strip('"')}
        answers = self.recommend([reqs[n] for n, _ in resolved], [x for _, x in resolved]) if resolved else []
        out = dict(errors)
        out.update({n: a.model_dump() for (n, _), a in zip(resolved, answers)})
        return [out[n] for n in range(len(reqs))]

    @torch.no_grad()
    def recommend(self, reqs: list[RecommendRequest], resolved: list | None = None) -> list[RecommendResponse]:
        run, data = self.rec.run, self.rec.data
        resolved = resolved if resolved is not None else [self.resolve(r) for r in reqs]
        lengths = np.array([len(h) for h, _, _ in resolved])
        ends = np.cumsum(lengths)
        starts = ends - lengths
        flat = np.concatenate([h for h, _, _ in resolved])
        flags = None
        if data.session_starts is not None:  # a known user's sessions; a posted history is one session
            flags = np.concatenate([data.session_starts[data.offsets[u]:data.offsets[u + 1]] if u >= 0 else
                                    np.eye(1, len(h), dtype=bool)[0] for h, u, _ in resolved])
        users = np.array([u for _, u, _ in resolved])
        new = np.array([r.new_session for r in reqs])
        model, dev = run.model, run.device
        k_max = min(max(r.k for r in reqs), data.n_items)
        if self.index is not None:
            inputs, context = inference_inputs(model, flat, starts, ends, run.cfg.data.max_len, dev, flags, users, new)
            reps = model.user_representation(inputs, **context).float().cpu().numpy()
            exclude = [h if r.exclude_seen else [] for (h, _, _), r in zip(resolved, reqs)]
            ids, scores = self.index.search(reps, k_max, exclude)
        else:
            scores_t = history_scores(model, flat, starts, ends, run.cfg.data.max_len, dev, flags, users, new,
                                      np.array([r.exclude_seen for r in reqs]))
            top = torch.topk(scores_t, k_max, dim=1)
            ids, scores = top.indices.cpu().numpy(), top.values.cpu().numpy()
        responses = []
        for row, (r, (_, _, skipped)) in enumerate(zip(reqs, resolved)):
            keep = [(i, s) for i, s in zip(ids[row][: r.k], scores[row][: r.k]) if np.isfinite(s) and i > 0]
            responses.append(RecommendResponse(items=[Scored(item=str(data.item_ids[i]), score=float(s)) for i, s in keep],
                                               skipped=skipped))
        return responses

    def item_name(self, i: int) -> str | None:
        """A readable name of internal item ``i`` where the data set has one (e.g. ml-100k titles)."""
        side = self.rec.data.item_side
        if side is None or i not in side.index:
            return None
        for column in ("title", "movie_title", "name"):
            if column in side.columns and isinstance(side.loc[i, column], str):
                return side.loc[i, column]
        return None

    def users(self, prefix: str = "", limit: int = 20) -> list[str]:
        ids = self.rec.data.user_ids.astype(str)
        return [u for u in ids if u.startswith(prefix)][:limit]

    def user(self, user_id: str) -> dict:
        u = self.rec._user_index.get(user_id)
        if u is None:
            raise UnknownIdError(f"unknown user id {user_id!r}")
        seq = self.rec.data.sequence(u)
        return {"user": user_id, "history": [{"item": str(self.rec.data.item_ids[i]), "name": self.item_name(int(i))} for i in seq]}

    @torch.no_grad()
    def interests(self, user_id: str, top: int = 5) -> dict:
        """The user's interests where the model has them (SIGMA): each one's intensity and its closest items."""
        model = self.rec.run.model
        if not (hasattr(model, "interest_vectors") and hasattr(model, "interest_intensities")):
            return {"user": user_id, "interests": None, "reason": f"{self.rec.run.cfg.model_name} has no interests"}
        u = self.rec._user_index.get(user_id)
        if u is None:
            raise UnknownIdError(f"unknown user id {user_id!r}")
        seq = self.rec.data.sequence(u)[-self.rec.run.cfg.data.max_len:]
        inputs = torch.as_tensor(seq, device=self.rec.run.device).unsqueeze(0)
        vectors, alpha = model.interest_vectors(inputs)[0], model.interest_intensities(inputs)[0]
        scores = vectors @ model.item_embeddings()[1:].T
        best = torch.topk(scores, min(top, scores.shape[1]), dim=1).indices + 1
        out = [{"interest": j, "intensity": float(alpha[j]),
                "items": [{"item": str(self.rec.data.item_ids[i]), "name": self.item_name(int(i))} for i in best[j].tolist()]}
               for j in torch.argsort(alpha, descending=True).tolist()]
        return {"user": user_id, "interests": out}

    def item(self, item_id: str) -> dict:
        i = self.rec._item_index.get(item_id)
        if i is None:
            raise UnknownIdError(f"unknown item id {item_id!r}")
        info = {"item": item_id, "index": int(i), "interactions": int(self._popularity[i])}
        side = self.rec.data.item_side
        if side is not None and i in side.index:
            info.update({k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in side.loc[i].items()})
        return info

    def metadata(self) -> dict:
        run = self.rec.run
        metrics_path = self.run_dir / "metrics.json"
        return {"model": run.cfg.model_name, "data": self.rec.data.name, "items": self.rec.data.n_items,
                "users": self.rec.data.n_users, "device": str(run.device),
                "scoring": "exact" if self.index is None else f"faiss {self.index.kind}",
                "test": json.loads(metrics_path.read_text())["test"] if metrics_path.exists() else None}


def create_app(run_dir: str | Path, checkpoint: str = "best", device: str = "auto", index_dir: str | Path | None = None,
               max_batch: int = 64):
    """The FastAPI application for a run (``uvicorn`` serves it; tests use FastAPI's TestClient). Concurrent
    ``POST /recommend`` requests are scored together, up to ``max_batch`` per model call (1 = each alone)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException

    service = Service(Recommender.from_run(run_dir, checkpoint, device), run_dir, index_dir)
    rec = service.rec
    batcher = RequestBatcher(service.recommend, max_batch)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        batcher.close()

    app = FastAPI(title="sigmarec", description=f"recommendations from {run_dir}", lifespan=lifespan)

    def guarded(fn, *args):
        try:
            return fn(*args)
        except UnknownIdError as exc:
            raise HTTPException(status_code=404, detail=str(exc).strip('"')) from None
        except (SigmarecError, ValueError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    from fastapi.responses import HTMLResponse

    from sigmarec.serve.page import PAGE

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/users")
    def users(prefix: str = "", limit: int = 20) -> dict:
        return {"users": service.users(prefix, max(1, min(limit, 1000)))}

    @app.get("/users/{user_id}")
    def user(user_id: str) -> dict:
        return guarded(service.user, user_id)

    @app.get("/users/{user_id}/interests")
    def interests(user_id: str) -> dict:
        return guarded(service.interests, user_id)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": rec.run.cfg.model_name, "items": rec.data.n_items}

    @app.get("/metadata")
    def metadata() -> dict:
        sizes = list(batcher.batch_sizes)
        calls = {"max_batch": batcher.max_batch, "model_calls": len(sizes), "requests": sum(sizes),
                 "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else None}
        return {**service.metadata(), "batching": calls}

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict:
        return guarded(service.item, item_id)

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(req: RecommendRequest) -> RecommendResponse:
        resolved = guarded(service.resolve, req)  # an unknown id fails its own request, never its batch
        return guarded(batcher.submit, req, resolved)

    @app.post("/recommend/batch")
    def recommend_batch(req: BatchRequest) -> dict:
        return {"results": guarded(service.recommend_batch, req.requests)}

    app.state.service, app.state.batcher = service, batcher
    return app
