"""Left-padded item sequences with session boundaries, regrouped per session (batched, no loops).

Session models (HNVM, HRNN, session-aware GRU4Rec) run one GRU within sessions and another across
them; both need ``[B, S, T]`` tensors (user, session, position in session) rather than the flat
``[B, L]`` layout of the rest of the library. ``session_view`` builds them with a cumulative sum and
one scatter, and keeps the map back so per-position outputs return to ``[B, L]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SessionView:
    """``items`` [B, S, T]: each row's sessions oldest first, each session's items from its start
    (right-padded with 0; sessions beyond a row's count are all 0); ``lengths`` [B, S] items per
    session (0 for missing sessions); ``n_sessions`` [B]; ``session`` and ``offset`` [B, L]: where
    each flat position went (-1 at padding)."""

    items: torch.Tensor
    lengths: torch.Tensor
    n_sessions: torch.Tensor
    session: torch.Tensor
    offset: torch.Tensor

    def to_flat(self, values: torch.Tensor) -> torch.Tensor:
        """Per-session values ``[B, S, T, ...]`` back to the flat layout ``[B, L, ...]`` (0 at padding)."""
        real = self.session >= 0
        b = torch.arange(self.session.shape[0], device=values.device)[:, None].expand_as(self.session)
        out = values[b, self.session.clamp(min=0), self.offset.clamp(min=0)]
        mask = real.reshape(real.shape + (1,) * (values.dim() - 3))
        return torch.where(mask, out, torch.zeros((), dtype=values.dtype, device=values.device))


def normalise_starts(inputs: torch.Tensor, session_starts: torch.Tensor | None) -> torch.Tensor:
    """Session starts restricted to real items, with every row's first real item a start (a window
    cut from a longer history may begin mid-session). ``None`` means one session per row."""
    real = inputs != 0
    prev_real = torch.zeros_like(real)
    prev_real[:, 1:] = real[:, :-1]
    first = real & ~prev_real
    if session_starts is None:
        return first
    return (session_starts.to(torch.bool) & real) | first


def session_view(inputs: torch.Tensor, session_starts: torch.Tensor | None) -> SessionView:
    """Regroup left-padded ``inputs`` [B, L] into sessions (see ``SessionView``)."""
    B, L = inputs.shape
    real = inputs != 0
    starts = normalise_starts(inputs, session_starts)
    session = torch.cumsum(starts.long(), dim=1) - 1  # -1 before the first real item
    pos = torch.arange(L, device=inputs.device).expand(B, L)
    last_start = torch.cummax(torch.where(starts, pos, torch.zeros_like(pos)), dim=1).values
    offset = pos - last_start
    session = torch.where(real, session, torch.full_like(session, -1))
    offset = torch.where(real, offset, torch.full_like(offset, -1))
    n_sessions = session.amax(dim=1).clamp(min=-1) + 1
    S = max(int(n_sessions.max()) if B else 0, 1)
    T = max(int(offset.max()) + 1 if B else 0, 1)
    items = torch.zeros(B, S, T, dtype=inputs.dtype, device=inputs.device)
    b = torch.arange(B, device=inputs.device)[:, None].expand(B, L)
    items[b[real], session[real], offset[real]] = inputs[real]
    lengths = torch.zeros(B, S, dtype=torch.long, device=inputs.device)
    lengths.index_put_((b[real], session[real]), torch.ones_like(session[real]), accumulate=True)
    return SessionView(items, lengths, n_sessions, session, offset)
