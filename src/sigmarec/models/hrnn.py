"""Session-aware GRU models: HRNN (Quadrana et al., RecSys 2017, "Personalizing Session-based
Recommendations with Hierarchical Recurrent Neural Networks") and its session-aware GRU4Rec baseline.

Both read a user's history as sessions (``session_starts`` flags, see ``layers/sessions.py``) and
score the next item from the state of a **session GRU**, projected to ``hidden_size`` and dotted
with the item table (input and output share it, as in the rest of the library).

* ``SessionGRU4Rec``: GRU4Rec whose state is reset to zero at every session start, so it only sees
  the current session. All sessions of all rows run as one packed GRU call.
* ``HRNN``: a **user GRU** reads the final state of each session; session ``s >= 1`` starts from
  ``tanh(W c_s + b)``, ``c_s`` being the user state after sessions ``< s`` (the user's first session
  starts from zero with ``c_0 = 0``, as the authors' code resets both states at a user's start).
  ``user_init="init"`` is HRNN-Init (the user state only initialises the session GRU);
  ``user_init="all"`` is HRNN-All (``c_s`` is also concatenated to the session GRU's input at every
  step of session ``s``; the authors' Theano code adds it to the reset/update gates only, the paper
  describes it as an input: the concatenation contains the code's form as a special case).

The sessions come from ``session_view`` (session index and offset of every position), and
``pack_sessions`` lays the real positions out directly as ``PackedSequence`` data, so no dense
``[B, S, T]`` activation is ever built: the work is proportional to the real items (a dense
``[B * S, T]`` layout was 13x the real items on windows of 50 with 5-item sessions).

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
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from sigmarec.data.batching import Batch
from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import NextItemLoss, next_item_loss
from sigmarec.models.layers.sessions import SessionView, normalise_starts, session_view



@dataclass
class SessionGRU4RecConfig(ModelConfig):
    hidden_size: int = 64  # item embedding / output size: the library compares models of the same width
    gru_size: int = 100  # session GRU units: the paper's 100 (authors' scripts)
    dropout: float = 0.1  # on item inputs, session outputs, HRNN's user-GRU input: the authors' session dropout, HNVM's too
    loss: Literal[NextItemLoss, "top1", "bpr"] = "ce"  # the library's next-item losses | top1 | bpr; ce: full softmax, the library's default for every model
    n_negatives: int = 100  # sampled: uniform negatives; top1/bpr: in-batch positions (authors' batches: 50); the library's 100
    init_std: float | None = None  # None: PyTorch defaults as GRU4Rec (0.02-style inits stall GRUs)
    cross_session_targets: bool = False  # False: train within-session transitions only, as the paper (see module doc)


@dataclass
class HRNNConfig(SessionGRU4RecConfig):
    user_gru_size: int = 100  # user GRU units: the paper's 100
    user_init: Literal["init", "all"] = "init"  # init (HRNN-Init) | all (HRNN-All); init: the authors' code default, fewer parameters
    recurrence: Literal["exact", "parallel"] = "exact"  # exact (paper, loops over sessions) | parallel (no loop, approximate; see module doc)


@dataclass
class PackedSessions:
    """The real positions of a ``SessionView`` laid out as packed sequences (``PackedSequence``: time
    major, longest sequence first), without ever building dense ``[B, S, T]`` activations.

    Sessions form groups that each get their own layout: all sessions in one group (one GRU call), or
    one group per session slot ``s`` (the ``s``-th session of every row, for the exact HRNN's loop).
    Positions are numbered in row-major order of the real items (``positions``: their flat index
    ``b * L + l``); the packed data of all groups is concatenated, group after group.
    """

    n_rows: int
    n_slots: int
    positions: torch.Tensor  # [R] flat index b * L + l of each real position
    packed: torch.Tensor  # [R] where each real position sits in the packed data
    order: torch.Tensor  # [R] the real position at each packed slot (inverse of ``packed``)
    packed_rows: torch.Tensor  # [R] row b of each packed slot
    packed_sessions: torch.Tensor  # [R] session b * S + s of each packed slot
    batch_sizes: list[torch.Tensor]  # per group (CPU int64), as PackedSequence wants them
    spans: list[tuple[int, int]]  # per group, its [start, end) in the packed data
    sequences: list[torch.Tensor]  # per group, session b * S + s of each packed sequence, longest first

    def run(self, gru: nn.GRU, group: int, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``gru`` over the group's packed data ``x`` [n, in] from ``h0`` [k, H] (its sequences in
        ``sequences[group]`` order; None: zeros). Returns the outputs [n, H] and final states [k, H]."""
        out, h_n = gru(PackedSequence(x, self.batch_sizes[group]), None if h0 is None else h0.unsqueeze(0).contiguous())
        return out.data, h_n[0]


def pack_sessions(view: SessionView, by_slot: bool) -> PackedSessions:
    """Group the sessions of ``view`` (one group, or one per slot with ``by_slot``) and compute the
    packed layout: sessions sorted by (group, length descending, row), ``batch_sizes[g][t]`` = the
    group's sessions longer than ``t``, and each real position's place ``group offset + time offset
    + rank of its session``. Vectorised; one device-to-host copy for the batch sizes."""
    B, S = view.lengths.shape
    L = view.session.shape[1]
    T = view.items.shape[2]
    dev = view.lengths.device
    n_groups = S if by_slot else 1
    lengths = view.lengths.reshape(-1)  # [B * S], session b * S + s
    gid = torch.arange(S, device=dev).repeat(B) if by_slot else torch.zeros(B * S, dtype=torch.long, device=dev)
    sess_order = torch.argsort(gid * (T + 1) + (T - lengths), stable=True)
    per_group = torch.bincount(gid, minlength=n_groups)
    group_start = torch.cumsum(per_group, 0) - per_group
    rank = torch.empty_like(sess_order)
    rank[sess_order] = torch.arange(B * S, device=dev) - group_start[gid[sess_order]]
    hist = torch.zeros(n_groups, T + 1, dtype=torch.long, device=dev).index_put_((gid, lengths), torch.ones_like(lengths), accumulate=True)
    bs = hist.flip(1).cumsum(1).flip(1)[:, 1:]  # [groups, T]: sessions longer than t
    time_off = torch.cumsum(bs, 1) - bs
    totals = bs.sum(1)
    group_off = torch.cumsum(totals, 0) - totals
    positions = torch.nonzero((view.session >= 0).reshape(-1)).squeeze(1)
    rows = positions // L
    session = rows * S + view.session.reshape(-1)[positions]
    g = gid[session]
    packed = group_off[g] + time_off[g, view.offset.reshape(-1)[positions]] + rank[session]
    order = torch.empty_like(packed)
    order[packed] = torch.arange(packed.numel(), device=dev)
    host = torch.cat([bs.reshape(-1), group_off, totals, group_start]).cpu()
    bs_h = host[: n_groups * T].view(n_groups, T)
    off_h, tot_h, start_h = host[n_groups * T:].view(3, n_groups).tolist()
    batch_sizes, spans, sequences = [], [], []
    for k in range(n_groups):  # bookkeeping per group: slices only
        n_seq = int(bs_h[k, 0])
        batch_sizes.append(bs_h[k, : int((bs_h[k] > 0).sum())].contiguous())
        spans.append((off_h[k], off_h[k] + tot_h[k]))
        sequences.append(sess_order[start_h[k] : start_h[k] + n_seq])
    return PackedSessions(B, S, positions, packed, order, rows[order], session[order], batch_sizes, spans, sequences)


def in_batch_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, kind: str, n_negatives: int) -> torch.Tensor:
    """TOP1 or BPR (Hidasi et al., 2016) of ``hidden`` [M, d] against ``targets`` [M] with the targets
    of up to ``n_negatives`` random rows as shared negatives; a negative equal to the row's target is
    masked. Per row the mean over its negatives, then the mean over rows with at least one.

    TOP1: ``sigmoid(r_j - r_i) + sigmoid(r_j^2)``; BPR: ``-log sigmoid(r_i - r_j)``. The authors' code
    scores ``tanh(logit)`` for these losses and keeps same-item pairs (TOP1 then subtracts the
    diagonal's ``sigmoid(r_i^2)`` term); here scores stay raw dot products, as the evaluator ranks."""
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



class SessionGRUModel(SequentialRecommender):
    """Shared parts: item table, session GRU, output projection, the loss over the flat positions and
    the representation of the newest position. Subclasses set ``by_slot`` (how ``pack_sessions``
    groups the sessions) and implement ``session_states(packing, x) -> [R, gru_size]`` from the
    dropped-out item embeddings ``x`` [R, d], both in packed order."""

    context = frozenset({"session_starts"})
    by_slot = False
    item: nn.Embedding

    def __init__(self, cfg: SessionGRU4RecConfig, n_items: int, max_len: int, extra_input: int = 0) -> None:
        super().__init__(cfg, n_items, max_len)
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

    def session_states(self, pk: PackedSessions, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, inputs: torch.Tensor, session_starts: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, hidden_size]``: at each position, the vector scoring the next item of its session
        (0 at padding)."""
        B, L = inputs.shape
        d = self.cfg.hidden_size
        pk = pack_sessions(session_view(inputs, session_starts), self.by_slot)
        flat = self.item.weight.new_zeros(B * L, d)
        if pk.positions.numel() == 0:
            return flat.view(B, L, d)
        x = self.drop(self.item(inputs.reshape(-1)[pk.positions]))[pk.order]
        h = self.out(self.drop(self.session_states(pk, x)[pk.packed]))  # back to real-position order
        return flat.index_copy(0, pk.positions, h).view(B, L, d)

    def loss(self, batch: Batch) -> torch.Tensor:
        h = self.encode(batch.inputs, batch.session_starts)
        mask = batch.targets > 0
        if not self.cfg.cross_session_targets:
            if batch.target_session_starts is not None:
                opens = batch.target_session_starts
            else:  # no flag for the last target: the input at t + 1 tells the others
                starts = normalise_starts(batch.inputs, batch.session_starts)
                opens = torch.zeros_like(starts)
                opens[:, :-1] = starts[:, 1:]
            mask = mask & ~opens
        return session_loss(h[mask], batch.targets[mask], self.item.weight, self.cfg.loss, self.cfg.n_negatives)

    def user_representation(self, inputs: torch.Tensor, session_starts: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(inputs, session_starts)[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight


class SessionGRU4Rec(SessionGRUModel):
    """GRU4Rec restarted from a zero state at every session start (the session-aware baseline): all
    sessions of all rows in one packed GRU call."""

    config_class = SessionGRU4RecConfig

    def __init__(self, cfg: SessionGRU4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        self.finish_init()

    def session_states(self, pk: PackedSessions, x: torch.Tensor) -> torch.Tensor:
        return pk.run(self.session_gru, 0, x)[0]


class HRNN(SessionGRUModel):
    """Session GRU initialised at each session start from a user GRU over the previous sessions'
    final states (see the module docstring for the modes and the windowed warm-up)."""

    config_class = HRNNConfig

    def __init__(self, cfg: HRNNConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len, extra_input=cfg.user_gru_size if cfg.user_init == "all" else 0)
        self.by_slot = cfg.recurrence == "exact"
        self.user_gru = nn.GRU(cfg.gru_size, cfg.user_gru_size, batch_first=True)
        self.user_to_session = nn.Linear(cfg.user_gru_size, cfg.gru_size)  # h_s = tanh(W c + b)
        self.finish_init()

    def session_input(self, x: torch.Tensor, user: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """HRNN-All: the user state before the session (``user[index]``, one row per packed slot of
        ``x``) joins every step's input; HRNN-Init: ``x`` as is."""
        return torch.cat([x, user[index]], dim=-1) if self.cfg.user_init == "all" else x

    def session_states(self, pk: PackedSessions, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.recurrence == "exact":
            return self.exact_states(pk, x)
        return self.parallel_states(pk, x)

    def exact_states(self, pk: PackedSessions, x: torch.Tensor) -> torch.Tensor:
        S = pk.n_slots
        user = x.new_zeros(pk.n_rows, self.cfg.user_gru_size)  # c_0 = 0
        outs = []
        for s in range(S):  # sessions depend on each other through the user state; batched over rows
            a, b = pk.spans[s]
            rows = pk.sequences[s] // S  # the rows having an s-th session, in packed batch order
            h0 = None if s == 0 else torch.tanh(self.user_to_session(user[rows]))
            out, final = pk.run(self.session_gru, s, self.session_input(x[a:b], user, pk.packed_rows[a:b]), h0)
            outs.append(out)
            if s + 1 < S:
                new = self.user_gru(self.drop(final).unsqueeze(1), user[rows].unsqueeze(0))[1][0]
                user = user.index_copy(0, rows, new)
        return torch.cat(outs)

    def parallel_states(self, pk: PackedSessions, x: torch.Tensor) -> torch.Tensor:
        B, S, U, G = pk.n_rows, pk.n_slots, self.cfg.user_gru_size, self.cfg.gru_size
        seqs = pk.sequences[0]  # every session, in packed batch order
        before = x.new_zeros(B * S, U)  # user state before each session b * S + s
        if S > 1:  # pass 1: every session from a zero start, as if the user were unknown
            _, final = pk.run(self.session_gru, 0, self.session_input(x, before, pk.packed_sessions))
            finals = x.new_zeros(B * S, G).index_copy(0, seqs, final).view(B, S, G)
            after, _ = self.user_gru(self.drop(finals[:, :-1]))  # [B, S - 1, U]: after sessions <= s
            before = torch.cat([x.new_zeros(B, 1, U), after], dim=1).reshape(B * S, U)
        h0 = torch.tanh(self.user_to_session(before[seqs]))
        h0 = torch.where((seqs % S == 0).unsqueeze(1), torch.zeros_like(h0), h0)  # a user's first session starts from zero
        return pk.run(self.session_gru, 0, self.session_input(x, before, pk.packed_sessions), h0)[0]
