"""The one place inference inputs are built: item ids and the context a model declares.

The evaluator, ``recommend`` and the server describe their cases the same way (flat item ids with
``starts``/``ends`` per case, optional flat session-start flags, user ids and new-session flags), so a
new context input is added here once, not threaded through each caller.
"""

from __future__ import annotations

import numpy as np
import torch

from sigmarec.data.batching import gather_left_padded, gather_session_starts
from sigmarec.models.base import SequentialRecommender


def inference_inputs(model: SequentialRecommender, items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int,
                     device: torch.device | str, session_starts: np.ndarray | None = None, users: np.ndarray | None = None,
                     new_session: np.ndarray | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """``(inputs [B, L], context)`` for ``model.score_all`` / ``user_representation``.

    ``inputs``: the last ``max_len`` items of ``items[starts[b]:ends[b]]``, left-padded to the longest. ``context``:
    only the keys in ``model.context``: ``session_starts`` laid out like ``inputs`` (from the flat flags; None: one
    session), ``users`` (internal ids; None or -1: unknown) and ``new_session`` ([B] bool; None: the item to score
    continues the newest session).
    """
    inputs = gather_left_padded(items, starts, ends, max_len)
    context: dict[str, torch.Tensor | None] = {}
    if "session_starts" in model.context:
        flags = gather_session_starts(session_starts, starts, ends, inputs.shape[1])
        context["session_starts"] = None if flags is None else torch.from_numpy(flags).to(device)
    if "users" in model.context:
        context["users"] = None if users is None else torch.from_numpy(np.asarray(users, dtype=np.int64)).to(device)
    if "new_session" in model.context:
        context["new_session"] = None if new_session is None else torch.from_numpy(np.asarray(new_session, dtype=bool)).to(device)
    return torch.from_numpy(inputs).to(device), context
