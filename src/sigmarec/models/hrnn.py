"""Session-aware GRU models: HRNN (Quadrana et al., RecSys 2017, "Personalizing Session-based
Recommendations with Hierarchical Recurrent Neural Networks") and its session-aware GRU4Rec baseline.

Both read a user's history as sessions (``session_starts`` flags, see ``layers/sessions.py``) and
score the next item from the state of a **session GRU**, projected to ``hidden_size`` and dotted
with the item table (input and output share it, as in the rest of the library).

* ``SessionGRU4Rec``: GRU4Rec whose state is reset to zero at every session start, so it only sees
  the current session. All sessions of all rows run as one packed GRU call (``[B * S, T]``).
* ``HRNN``: a **user GRU** reads the final state of each session; session ``s >= 1`` starts from
  ``tanh(W c_s + b)``, ``c_s`` being the user state after sessions ``< s`` (the user's first session
  starts from zero with ``c_0 = 0``, as the authors' code resets both states at a user's start).
  ``user_init="init"`` is HRNN-Init (the user state only initialises the session GRU);
  ``user_init="all"`` is HRNN-All (``c_s`` is also concatenated to the session GRU's input at every
  step of session ``s``; the authors' Theano code adds it to the reset/update gates only, the paper
  describes it as an input: the concatenation contains the code's form as a special case).

**Batches instead of session-parallel mini-batches.** The authors train on session-parallel
mini-batches and carry the session and user states across mini-batches; at evaluation they replay a
user's training sessions to warm the states. Here every batch row is a window of a user's history
(flat, left-padded, cut into sessions by ``session_view``), and the user state is warmed by
replaying the earlier sessions *inside the window*: the first session of a window (which may begin
mid-session) is treated as the user's first. The same holds at evaluation, so ``max_len`` bounds
how much history the user GRU sees. Gradients flow through the whole window (the authors' code
truncates them at every step).

**Exact vs parallel recurrence.** The exact HRNN is sequential across sessions: session ``s``'s
final state depends on its start, which depends on the user state, which depends on session
``s - 1``'s final state. No single GRU call can compute it, so ``recurrence="exact"`` (default)
loops over the window's ``S`` session slots, each step one packed session-GRU call over all rows
at once plus one user-GRU step (the only Python loop; ``S`` <= ``max_len``).
``recurrence="parallel"`` has no loop: a first packed pass runs every session from a zero start
(as if the user were unknown, which is exactly the exact model's first session), the user GRU reads
those final states in one call over ``[B, S]``, and a second packed pass runs every session from its
user-initialised start. It is an approximation (the user GRU reads user-independent session
encodings) with the same parameters, so a model trained one way can be evaluated the other.

**Targets.** The target of a session's last item is the next session's first item. The paper
models only within-session transitions (session-parallel batches never cross a session end), and a
session-aware GRU4Rec cannot know the next session, so ``cross_session_targets=False`` (default)
drops those targets; a target is known to open a session when the flag of the following input is
set. The last column's target has no flag in ``Batch`` and is kept. With ``True`` every target
trains, scored from the current session's state (as ``user_representation`` scores any target).

**Losses.** ``ce`` | ``bce`` | ``sampled`` as in ``layers/losses.py``, plus the paper's ``top1``
and ``bpr`` over in-batch negatives: the targets of up to ``n_negatives`` random positions of the
batch (popularity-proportional negatives, as GRU4Rec's mini-batch sampling), a negative equal to a
row's target masked out (``in_batch_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sigmarec.data.batching import Batch
from sigmarec.models.base import SequentialRecommender
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.losses import LOSSES, next_item_loss
from sigmarec.models.layers.sessions import SessionView, normalise_starts, session_view
from sigmarec.models.sasrec import init_weights

SESSION_LOSSES = LOSSES + ("top1", "bpr")


@dataclass
class SessionGRU4RecConfig:
    hidden_size: int = 64  # item embedding / output size: the library compares models of the same width
    gru_size: int = 100  # session GRU units: the paper's 100
    dropout: float = 0.1  # on item inputs, session outputs (and HRNN's user-GRU input): HNVM's GRU dropout for this baseline
    loss: str = "ce"  # ce | bce | sampled | top1 | bpr; ce: full softmax, the library's default for every model
    n_negatives: int = 100  # sampled: uniform negatives; top1/bpr: in-batch positions (the paper's batch size was 50-100)
    init_std: float | None = None  # None: PyTorch defaults as GRU4Rec (0.02-style inits stall GRUs)
    cross_session_targets: bool = False  # False: train within-session transitions only, as the paper (see module doc)


@dataclass
class HRNNConfig(SessionGRU4RecConfig):
    user_gru_size: int = 100  # user GRU units: the paper's 100
    user_init: str = "init"  # init (HRNN-Init) | all (HRNN-All); init: the authors' code default, fewer parameters
    recurrence: str = "exact"  # exact (paper, loops over sessions) | parallel (no loop, approximate; see module doc)


def run_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``gru`` over right-padded ``x`` [N, T, in] with ``lengths`` [N] (0 is run as 1; callers mask
    those rows) from ``h0`` [N, H] (None: zeros). Returns the outputs [N, T, H] (0 past each length)
    and each row's final state [N, H]."""
    T = x.shape[1]
    packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    out, h_n = gru(packed, None if h0 is None else h0.unsqueeze(0).contiguous())
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    return out, h_n[0]


def in_batch_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, kind: str, n_negatives: int) -> torch.Tensor:
    """TOP1 or BPR (Hidasi et al., 2016) of ``hidden`` [M, d] against ``targets`` [M] with the targets
    of up to ``n_negatives`` random rows as shared negatives; a negative equal to the row's target is
    masked. Per row the mean over its negatives, then the mean over rows with at least one.

    TOP1: ``sigmoid(r_j - r_i) + sigmoid(r_j^2)``; BPR: ``-log sigmoid(r_i - r_j)``."""
    M = targets.shape[0]
    pick = torch.randperm(M, device=targets.device)[:n_negatives] if M > n_negatives else torch.arange(M, device=targets.device)
    neg = targets[pick]
    pos = (hidden * items[targets]).sum(-1, keepdim=True).float()
    negs = (hidden @ items[neg].T).float()
    valid = (neg[None, :] != targets[:, None]).to(negs.dtype)
    if kind == "top1":
        per = torch.sigmoid(negs - pos) + torch.sigmoid(negs**2)
    elif kind == "bpr":
        per = -F.logsigmoid(pos - negs)
    else:
        raise ValueError(f"unknown in-batch loss {kind!r}; expected top1 or bpr")
    count = valid.sum(1)
    rows = count > 0
    row_loss = (per * valid).sum(1) / count.clamp(min=1)
    return (row_loss * rows).sum() / rows.sum().clamp(min=1)


def session_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, kind: str, n_negatives: int) -> torch.Tensor:
    if kind in ("top1", "bpr"):
        return in_batch_loss(hidden, targets, items, kind, n_negatives)
    return next_item_loss(hidden, targets, items, kind, n_negatives)


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"model.{name} must be one of {', '.join(allowed)}; got {value!r}")


class SessionGRUModel(SequentialRecommender):
    """Shared parts: item table, session GRU over per-session tensors, output projection, the loss
    over the flat positions and the representation of the newest position. Subclasses implement
    ``session_states(view, x) -> [B, S, T, gru_size]`` (``x``: dropped-out item embeddings [B, S, T, d])."""

    context = frozenset({"session_starts"})
    item: nn.Embedding

    def __init__(self, cfg: SessionGRU4RecConfig, n_items: int, max_len: int, extra_input: int = 0) -> None:
        super().__init__(cfg, n_items, max_len)
        check_choice("loss", cfg.loss, SESSION_LOSSES)
        self.item = nn.Embedding(n_items + 1, cfg.hidden_size, padding_idx=0)
        self.drop = FastDropout(cfg.dropout)
        self.session_gru = nn.GRU(cfg.hidden_size + extra_input, cfg.gru_size, batch_first=True)
        self.out = nn.Linear(cfg.gru_size, cfg.hidden_size)

    def finish_init(self) -> None:
        if self.cfg.init_std is not None:
            init_weights(self.item, self.cfg.init_std)
            init_weights(self.out, self.cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def session_states(self, view: SessionView, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, inputs: torch.Tensor, session_starts: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, hidden_size]``: at each position, the vector scoring the next item of its session."""
        view = session_view(inputs, session_starts)
        states = self.session_states(view, self.drop(self.item(view.items)))
        return self.out(self.drop(view.to_flat(states)))

    def loss(self, batch: Batch) -> torch.Tensor:
        h = self.encode(batch.inputs, batch.session_starts)
        mask = batch.targets > 0
        if not self.cfg.cross_session_targets:
            starts = normalise_starts(batch.inputs, batch.session_starts)
            opens = torch.zeros_like(starts)
            opens[:, :-1] = starts[:, 1:]  # the target at t is the input at t + 1
            mask = mask & ~opens
        return session_loss(h[mask], batch.targets[mask], self.item.weight, self.cfg.loss, self.cfg.n_negatives)

    def user_representation(self, inputs: torch.Tensor, session_starts: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(inputs, session_starts)[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight


class SessionGRU4Rec(SessionGRUModel):
    """GRU4Rec restarted from a zero state at every session start (the session-aware baseline)."""

    config_class = SessionGRU4RecConfig

    def __init__(self, cfg: SessionGRU4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        self.finish_init()

    def session_states(self, view: SessionView, x: torch.Tensor) -> torch.Tensor:
        B, S, T, d = x.shape
        out, _ = run_gru(self.session_gru, x.reshape(B * S, T, d), view.lengths.reshape(-1))
        return out.reshape(B, S, T, -1)


class HRNN(SessionGRUModel):
    """Session GRU initialised at each session start from a user GRU over the previous sessions'
    final states (see the module docstring for the modes and the windowed warm-up)."""

    config_class = HRNNConfig

    def __init__(self, cfg: HRNNConfig, n_items: int, max_len: int) -> None:
        check_choice("user_init", cfg.user_init, ("init", "all"))
        check_choice("recurrence", cfg.recurrence, ("exact", "parallel"))
        super().__init__(cfg, n_items, max_len, extra_input=cfg.user_gru_size if cfg.user_init == "all" else 0)
        self.user_gru = nn.GRU(cfg.gru_size, cfg.user_gru_size, batch_first=True)
        self.user_to_session = nn.Linear(cfg.user_gru_size, cfg.gru_size)  # h_s = tanh(W c + b)
        self.finish_init()

    def session_input(self, x: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """HRNN-All: the user state before the session joins every step's input."""
        if self.cfg.user_init != "all":
            return x
        return torch.cat([x, user.unsqueeze(-2).expand(*x.shape[:-1], user.shape[-1])], dim=-1)

    def session_states(self, view: SessionView, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.recurrence == "exact":
            return self.exact_states(view, x)
        return self.parallel_states(view, x)

    def exact_states(self, view: SessionView, x: torch.Tensor) -> torch.Tensor:
        B, S = view.lengths.shape
        user = x.new_zeros(B, self.cfg.user_gru_size)
        outs = []
        for s in range(S):  # sessions depend on each other through the user state; batched over rows
            h0 = None if s == 0 else torch.tanh(self.user_to_session(user))
            out, final = run_gru(self.session_gru, self.session_input(x[:, s], user), view.lengths[:, s], h0)
            outs.append(out)
            if s + 1 < S:  # rows without session s have no later session: their user state is never read
                user = self.user_gru(self.drop(final).unsqueeze(1), user.unsqueeze(0))[1][0]
        return torch.stack(outs, dim=1)

    def parallel_states(self, view: SessionView, x: torch.Tensor) -> torch.Tensor:
        B, S, T, d = x.shape
        U = self.cfg.user_gru_size
        zero_user = x.new_zeros(B, S, U)
        flat_len = view.lengths.reshape(-1)
        user_before = zero_user
        if S > 1:
            first = self.session_input(x[:, :-1], zero_user[:, :-1]).reshape(B * (S - 1), T, -1)
            _, final = run_gru(self.session_gru, first, view.lengths[:, :-1].reshape(-1))
            after, _ = self.user_gru(self.drop(final.reshape(B, S - 1, -1)))  # [B, S - 1, U]: state after sessions <= s
            user_before = torch.cat([zero_user[:, :1], after], dim=1)
        h0 = torch.tanh(self.user_to_session(user_before))
        h0 = torch.cat([torch.zeros_like(h0[:, :1]), h0[:, 1:]], dim=1)  # a user's first session starts from zero
        x2 = self.session_input(x, user_before).reshape(B * S, T, -1)
        out, _ = run_gru(self.session_gru, x2, flat_len, h0.reshape(B * S, -1))
        return out.reshape(B, S, T, -1)
