"""HNVM (Xiao, Liang and Meng, WWW 2019): a hierarchical neural variational model over sessions.

Generative process (Section 3.1-3.2, Eq. 5-12) for a user u with profile ``a^u`` and sessions
``s_1 .. s_N`` (a user's stream cut at 30 minutes of inactivity by the data pipeline):

* general preference ``e^u ~ p(e | a^u) = N(f_mu(a), f_var(a))`` (Eq. 6);
* an *encoder* GRU summarises each session into its last state ``h_n^enc`` (Eq. 9), a *context* GRU
  runs over those summaries, ``h_n^con = GRU(h_{n-1}^con, h_n^enc)`` (Eq. 10), ``h_0^con = 0``;
* long-term preference ``z_n ~ p(z_n | h_{n-1}^con, e^u)``, mean and log-variance from a two-layer
  MLP of ``[h_{n-1}^con, e^u]`` (Eq. 5, 12);
* a *decoder* GRU generates session n, ``h_{n,t}^dec = GRU(h_{n,t-1}^dec, [i_{n,t}, h_{n-1}^con, z_n])``
  (Eq. 11), and ``h_{n,t}^dec`` scores item ``i_{n,t+1}`` against the item table (Eq. 2, 7).

Inference network (Eq. 13-16): ``q(e | a^u)`` from the profile alone, ``q(z_n | h_{n-1}^con, h_n^enc)``
from the context and the summary of the *whole* session n. Loss = the negative ELBO (Eq. 18, 22):
reconstruction of every item of every session with ``z_n`` drawn from q (reparameterised, Eq. 23-24)
plus ``w * (sum_n KL(q(z_n) || p(z_n | e)) + KL(q(e) || p(e)))`` with a single sample of ``e`` from
``q(e)`` inside the first KL and ``w`` annealed from 0 to 1 (Section 4.3). All variances are the
network's ``exp(log-variance)`` times ``variance_scale`` = 0.05 (Section 4.3).

Resolved open points (see also ``HNVMConfig``):

* **Batching (Eq. 19).** A batch row is one user's window; ``session_view`` regroups it into
  sessions, and each GRU runs once per batch over every session at once (packed sequences built from
  step indices, so no ``[sessions, max session length, features]`` float tensor is padded out), the
  context GRU once over every row's sessions. No Python loop over users, sessions or positions.
* **First item of a session.** The paper starts the decoder from ``h^dec_{n,0} = 0`` and predicts
  ``i_{n,1}`` from ``(z_n, h_{n-1}^con)`` (Eq. 7 at t = 1); here the decoder's first step reads a
  learned begin-of-session vector in place of an item, and its output scores ``i_{n,1}``. In
  training, the target after the last item of session n-1 (the first item of session n) is scored by
  that step of session n; every other target continues its own session.
* **Leakage and inference.** ``q(z_n | ., h_n^enc)`` sees all of session n, including the items it
  must predict: it is a training device only. ``user_representation``, ``score_all`` and
  ``position_representations`` use the prior mean of ``z_n`` given ``h_{n-1}^con`` and the mean of
  ``q(e | a^u)`` (a function of the profile alone), so the prediction of item t+1 of a session uses
  the earlier sessions, the profile and the items up to t of that session, nothing later. The
  newest input item's successor is taken to continue the newest session (the evaluator's and server's
  convention); ``next_session_representation`` scores the first item of a session opened after it.
* **Training window.** ``loss`` appends each row's last target to its inputs, flagged by
  ``Batch.target_session_starts`` (unflagged, i.e. a continuation, when the batch has none), so the
  ELBO covers every item of every session of the window: each session's posterior sees all of its
  items, and a final target that opens a session is its own one-item session.
* **User profile.** ``a^u`` = the user-feature matrix of the data (``user_profile=auto`` with usable
  side data, or ``features``), else a one-hot user id (the paper's setting), i.e. an embedding table
  of ``n_users`` rows plus a bias. A user unknown to training (id -1, or any id outside the table)
  has the all-zero profile (one-hot: no row; features: the standardised mean), so its ``e`` comes
  from the networks' biases, which every user trains.
* **KL scale.** ``recon`` is the mean over target positions, so both KL sums are divided by the
  number of targets: ``loss`` is the negative ELBO per target (exact for ``loss=ce``, whose ``recon``
  is the negative log-likelihood). ``kl_e`` counts each window (row) once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from sigmarec.data.batching import Batch
from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.layers.anneal import annealed_weight
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.gaussian import kl_diag_gaussians
from sigmarec.models.layers.losses import NextItemLoss, bpr_loss, next_item_loss
from sigmarec.models.layers.mlp import OneHotLinear, mlp2
from sigmarec.models.layers.sessions import SessionView, normalise_starts, session_view


@dataclass
class HNVMConfig(ModelConfig):
    hidden_size: int = 64  # d: item embeddings and the output vector scored against them (library width; paper: not given)
    gru_size: int = 200  # states of the encoder, context and decoder GRUs and the MLPs' hidden width (paper: 200)
    z_size: int = 64  # D_z, the per-session latent z_n (paper: not given)
    user_size: int = 64  # D_e, the user latent e^u, also the hidden width of the profile networks (paper: not given)
    variance_scale: float = 0.05  # every prior/posterior variance = this * exp(net output) (paper: 0.05, for stable gradients)
    dropout: float = 0.1  # on GRU hidden states: session summaries, context states, decoder outputs (paper: 0.1)
    anneal_steps: int = 200  # KL weight = min(1, step / anneal_steps), 0 = 1 from the start (paper: 0 -> 1 linearly,
    # length not given). Inference uses the prior, so while the weight is low the decoder learns to lean on the
    # posterior's view of the session's own future, which the prior cannot give at test time. synthetic-sessions,
    # 1000 users, 30 epochs (240 steps), test NDCG@10: .13 (2000 steps), .23 (500), .34 (200), .33 (0); GRU4Rec .28
    loss: Literal[NextItemLoss, "bpr"] = "ce"  # ce (full softmax: a true likelihood, so the loss is an ELBO; the library's default) | bce | sampled
    # | bpr (the paper's: -log sigmoid(pos - neg) with one uniform negative per target)
    n_negatives: int = 100  # for loss=sampled
    user_profile: Literal["auto", "id", "features"] = "auto"  # a^u: auto = user features when the data has usable ones, else one-hot id | id | features
    init_std: float | None = 0.1  # weights uniform with this std, biases 0 (paper: "uniform with variance 0.01");
    # None = PyTorch defaults


@dataclass
class SessionContext:
    """Per-batch session structure and the encoder/context states (dropout applied).

    ``starts`` [B, L] normalised session starts; ``sess_row``/``sess_idx`` [R] row and index of each
    real session (row-major, so a row's sessions are consecutive); ``rid`` [B, S] the real-session
    number of (row, session), -1 where none; ``items`` [R, T] and ``lengths`` [R] the real sessions;
    ``h_enc`` [R, g] their summaries; ``context`` [B, S, g] ``h_n^con``; ``h_prev`` [B, S, g]
    ``h_{n-1}^con`` (0 for the first session)."""

    view: SessionView
    starts: torch.Tensor
    sess_row: torch.Tensor
    sess_idx: torch.Tensor
    rid: torch.Tensor
    items: torch.Tensor
    lengths: torch.Tensor
    h_enc: torch.Tensor
    context: torch.Tensor
    h_prev: torch.Tensor


class HNVM(SequentialRecommender):
    """HNVM; see the module docstring. Context inputs: ``session_starts`` (bool [B, L]) and ``users``
    (int64 [B], -1 = unknown); both optional (no starts: one session per row; no users: unknown)."""

    config_class = HNVMConfig
    context = frozenset({"session_starts", "users", "new_session"})

    def __init__(self, cfg: HNVMConfig, n_items: int, max_len: int, n_users: int = 0,
                 user_features: torch.Tensor | None = None) -> None:
        super().__init__(cfg, n_items, max_len)
        if cfg.variance_scale <= 0:
            raise ValueError(f"model.variance_scale must be positive, got {cfg.variance_scale}")
        if user_features is not None:
            user_features = torch.as_tensor(user_features, dtype=torch.float32)
            if user_features.dim() != 2 or (n_users and user_features.shape[0] != n_users):
                raise ValueError(f"user_features must be [n_users={n_users}, F], got {tuple(user_features.shape)}")
            n_users = user_features.shape[0]
            # one extra all-zero row: the profile of an unknown user (standardised features: the mean user)
            self.register_buffer("user_features", torch.cat([user_features, user_features.new_zeros(1, user_features.shape[1])]))
        else:
            self.user_features = None
        self.n_users = n_users
        d, g, dz, de = cfg.hidden_size, cfg.gru_size, cfg.z_size, cfg.user_size
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.bos = nn.Parameter(torch.zeros(d))  # decoder input at a session's first step (no item seen yet)
        self.drop = FastDropout(cfg.dropout)
        self.encoder = nn.GRU(d, g, batch_first=True)
        self.context_gru = nn.GRU(g, g, batch_first=True)
        self.decoder = nn.GRU(d + g + dz, g, batch_first=True)
        self.out = nn.Linear(g, d)

        def profile_net() -> nn.Sequential:
            if self.user_features is None:
                return mlp2(0, de, 2 * de, first=OneHotLinear(n_users, de))
            return mlp2(self.user_features.shape[1], de, 2 * de)

        self.e_prior, self.e_posterior = profile_net(), profile_net()  # f_{mu,sigma}(a^u) (Eq. 6), g_{mu,sigma}(a^u) (Eq. 14)
        self.z_prior = mlp2(g + de, g, 2 * dz)  # [h_{n-1}^con, e^u] (Eq. 12)
        self.z_posterior = mlp2(2 * g, g, 2 * dz)  # [h_{n-1}^con, h_n^enc] (Eq. 15)
        if cfg.init_std is not None:
            bound = cfg.init_std * math.sqrt(3.0)  # U(-a, a) has std a / sqrt(3)
            for name, p in self.named_parameters():
                if name.rsplit(".", 1)[-1].startswith("bias"):
                    nn.init.zeros_(p)
                else:
                    nn.init.uniform_(p, -bound, bound)
        with torch.no_grad():
            self.item.weight[0].zero_()
            for net in (self.e_prior, self.e_posterior):
                if isinstance(net[0], OneHotLinear):
                    net[0].weight.weight[n_users].zero_()
        self.log_scale = math.log(cfg.variance_scale)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_data(cls, cfg: HNVMConfig, data, max_len: int, split=None) -> "HNVM":
        features = None
        if cfg.user_profile != "id":
            try:
                from sigmarec.data.sessions import user_features as _user_features
            except ImportError:  # the data layer without user-feature encoding
                _user_features = None
            features = None if _user_features is None else _user_features(data)
            if features is None and cfg.user_profile == "features":
                raise ValueError(f"model.user_profile=features, but {data.name} has no usable user side data")
        feats = None if features is None else torch.as_tensor(features, dtype=torch.float32)
        return cls(cfg, data.n_items, max_len, n_users=data.n_users, user_features=feats)

    # ---- schedule ----
    def on_train_step(self) -> None:
        self.step += 1

    def kl_weight(self) -> float:
        """``w``: linear in the number of training steps taken, from 0 to 1."""
        steps = self.cfg.anneal_steps
        return 1.0 if steps <= 0 else min(1.0, float(self.step) / steps)

    def _kl_weight_tensor(self) -> torch.Tensor:
        """``kl_weight()`` on the step counter's device, without a host sync per step."""
        return annealed_weight(self.step, 1.0, self.cfg.anneal_steps)

    # ---- distributions ----
    def _gaussian(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output -> (mean, log-variance) with the variance multiplied by ``variance_scale``."""
        mean, logvar = raw.chunk(2, dim=-1)
        return mean, logvar + self.log_scale

    @staticmethod
    def _sample(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)

    def _profile(self, users: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """``a^u`` as the profile networks take it: a row index (one-hot) or feature rows. Users outside
        ``[0, n_users)`` (-1 = unknown) get the zero profile."""
        if users is None:
            idx = torch.full((batch,), self.n_users, dtype=torch.long, device=device)
        else:
            u = users.to(device=device, dtype=torch.long)
            idx = torch.where((u < 0) | (u >= self.n_users), torch.full_like(u, self.n_users), u)
        return idx if self.user_features is None else self.user_features[idx]

    def user_distributions(self, users: torch.Tensor | None, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        """``p(e | a^u)`` and ``q(e | a^u)``: means and (scaled) log-variances ``[B, D_e]``."""
        a = self._profile(users, batch, device)
        pm, plv = self._gaussian(self.e_prior(a))
        qm, qlv = self._gaussian(self.e_posterior(a))
        return {"prior_mean": pm, "prior_logvar": plv, "post_mean": qm, "post_logvar": qlv}

    def z_prior_dist(self, h_prev: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._gaussian(self.z_prior(torch.cat([h_prev, e], dim=-1)))

    def z_posterior_dist(self, h_prev: torch.Tensor, h_enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._gaussian(self.z_posterior(torch.cat([h_prev, h_enc], dim=-1)))

    # ---- networks ----
    def sessions(self, inputs: torch.Tensor, session_starts: torch.Tensor | None) -> SessionContext:
        """Encoder over every session, context GRU over every row's sessions (Eq. 9-10)."""
        B, L = inputs.shape
        g = self.cfg.gru_size
        view = session_view(inputs, session_starts)
        S = view.items.shape[1]
        real = view.lengths > 0
        sess_row, sess_idx = real.nonzero(as_tuple=True)
        rid = torch.full((B, S), -1, dtype=torch.long, device=inputs.device)
        rid[sess_row, sess_idx] = torch.arange(len(sess_row), device=inputs.device)
        items, lengths = view.items[sess_row, sess_idx], view.lengths[sess_row, sess_idx]
        seq = inputs.new_zeros((B, S, g), dtype=self.out.weight.dtype)
        if len(sess_row):
            packed = pack_padded_sequence(_step_ids(items.shape, items.device), lengths.cpu(), batch_first=True, enforce_sorted=False)
            x = self.item(items.reshape(-1)[packed.data])
            _, h_last = self.encoder(_repack(packed, x))
            h_enc = self.drop(h_last[-1])  # [R, g], in session order
            seq[sess_row, sess_idx] = h_enc
        else:
            h_enc = seq.new_zeros((0, g))
        packed = pack_padded_sequence(seq, view.n_sessions.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.context_gru(packed)
        context = self.drop(pad_packed_sequence(out, batch_first=True, total_length=S)[0])
        h_prev = torch.cat([context.new_zeros(B, 1, g), context[:, :-1]], dim=1)  # h_0^con = 0
        return SessionContext(view, normalise_starts(inputs, session_starts), sess_row, sess_idx, rid, items, lengths,
                              h_enc, context, h_prev)

    def _decode(self, items: torch.Tensor, lengths: torch.Tensor, h_prev: torch.Tensor, z: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder GRU (Eq. 11) over sessions ``items`` [R, T] (``lengths`` [R] >= 0) conditioned on
        ``[h_{n-1}^con, z_n]``; step 0 reads the begin-of-session vector, step j the j-th item.

        Returns outputs in item space ``[P, d]`` (one per real step) and ``index`` [R, T + 1]: the row of
        step j of session r (-1 beyond it). Step j scores the session's item j + 1 (1-based)."""
        R, T = items.shape
        packed = pack_padded_sequence(_step_ids((R, T + 1), items.device), (lengths + 1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        ids = packed.data
        r, j = ids // (T + 1), ids % (T + 1)
        prev = items[r, (j - 1).clamp(min=0)]
        x = torch.where((j == 0).unsqueeze(-1), self.bos.expand(len(ids), -1), self.item(prev))
        cond = torch.cat([h_prev, z], dim=-1)
        out, _ = self.decoder(_repack(packed, torch.cat([x, cond[r]], dim=-1)))
        index = torch.full((R * (T + 1),), -1, dtype=torch.long, device=items.device)
        index[ids] = torch.arange(len(ids), device=items.device)
        return self.out(self.drop(out.data)), index.view(R, T + 1)

    def _position_hidden(self, inputs: torch.Tensor, session_starts: torch.Tensor | None, users: torch.Tensor | None,
                         latent: str, next_session_targets: bool) -> tuple[torch.Tensor, dict]:
        """Output vector of every position ``[B, L, d]`` (0 at padding) and the distributions.

        ``latent``: ``sample`` (training: e ~ q(e), z_n ~ q(z_n)), ``posterior`` (their means) or
        ``prior`` (inference: e = mean of q(e), z_n = mean of p(z_n | h_{n-1}^con, e)).
        ``next_session_targets``: a position whose next item opens a session is scored by the first
        decoder step of that session (training: the targets' sessions are known); otherwise every
        position continues its own session (inference)."""
        B, L = inputs.shape
        ctx = self.sessions(inputs, session_starts)
        users_dist = self.user_distributions(users, B, inputs.device)
        qe_mean, qe_logvar = users_dist["post_mean"], users_dist["post_logvar"]
        e = self._sample(qe_mean, qe_logvar) if latent == "sample" else qe_mean
        h_prev = ctx.h_prev[ctx.sess_row, ctx.sess_idx]
        pz = self.z_prior_dist(h_prev, e[ctx.sess_row])
        qz = self.z_posterior_dist(h_prev, ctx.h_enc)
        if latent == "sample":
            z = self._sample(*qz)
        elif latent == "posterior":
            z = qz[0]
        elif latent == "prior":
            z = pz[0]
        else:
            raise ValueError(f"latent must be sample, posterior or prior, got {latent!r}")
        dists = {"users": users_dist, "z_prior": pz, "z_posterior": qz, "context": ctx}
        view = ctx.view
        real = view.session >= 0
        if not len(ctx.sess_row):
            return inputs.new_zeros((B, L, self.cfg.hidden_size), dtype=self.out.weight.dtype), dists
        out, index = self._decode(ctx.items, ctx.lengths, h_prev, z)
        rows = torch.arange(B, device=inputs.device)[:, None]
        r = ctx.rid[rows, view.session.clamp(min=0)]
        j = view.offset + 1  # the step after this position's item
        if next_session_targets:
            opens = torch.zeros_like(real)
            opens[:, :-1] = ctx.starts[:, 1:] & real[:, :-1]  # the last column continues its session
            r, j = torch.where(opens, r + 1, r), torch.where(opens, torch.zeros_like(j), j)
        step = index[r.clamp(min=0), j.clamp(min=0)]
        h = out[step.clamp(min=0)]
        return torch.where(real.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device)), dists

    # ---- training ----
    def _recon(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "bpr":
            return bpr_loss(hidden, targets, self.item.weight)
        return next_item_loss(hidden, targets, self.item.weight, self.cfg.loss, self.cfg.n_negatives)

    @staticmethod
    def training_window(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(items, session_starts, targets)`` ``[B, L + 1]``: the batch with each row's last target
        appended as an item (a session start where ``target_session_starts`` says so) and no target
        after it."""
        inputs, targets = batch.inputs, batch.targets
        last = targets[:, -1:]
        starts = batch.session_starts if batch.session_starts is not None else torch.zeros_like(inputs, dtype=torch.bool)
        opens = batch.target_session_starts
        opens_last = opens[:, -1:].to(torch.bool) & (last > 0) if opens is not None else torch.zeros_like(last, dtype=torch.bool)
        return (torch.cat([inputs, last], dim=1), torch.cat([starts.to(torch.bool), opens_last], dim=1),
                torch.cat([targets, torch.zeros_like(last)], dim=1))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Negative ELBO per target (Eq. 18) over the training window (``training_window``):
        reconstruction with ``z_n ~ q(z_n | h_{n-1}^con, h_n^enc)`` plus the annealed KL terms. In eval
        mode the posterior means replace the samples."""
        inputs, starts, all_targets = self.training_window(batch)
        h, dists = self._position_hidden(inputs, starts, batch.users, "sample" if self.training else "posterior",
                                         next_session_targets=True)
        mask = (all_targets > 0) & (inputs > 0)
        targets = all_targets[mask]
        n_targets = max(int(targets.numel()), 1)
        recon = self._recon(h[mask], targets) if targets.numel() else h.sum() * 0.0
        kl_z = kl_diag_gaussians(*dists["z_posterior"], *dists["z_prior"]).sum() / n_targets
        u = dists["users"]
        has_items = dists["context"].view.n_sessions > 0
        kl_e = kl_diag_gaussians(u["post_mean"], u["post_logvar"], u["prior_mean"], u["prior_logvar"])[has_items].sum() / n_targets
        w = self._kl_weight_tensor()
        total = recon + w * (kl_z + kl_e)
        return {"loss": total, "recon": recon.detach(), "kl_z": kl_z.detach(), "kl_e": kl_e.detach(), "kl_weight": w}

    # ---- inference (prior means; no leakage) ----
    def position_representations(self, inputs: torch.Tensor, session_starts: torch.Tensor | None = None,
                                 users: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, d]``: at each position, the vector scoring the item that continues its session, from
        the earlier sessions, the profile and the session's items up to that position (0 at padding)."""
        return self._position_hidden(inputs, session_starts, users, "prior", next_session_targets=False)[0]

    def _newest(self, inputs: torch.Tensor, session_starts: torch.Tensor | None, users: torch.Tensor | None,
                new_session: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` for the item after the newest input: where ``new_session`` ([B] bool) is set, the
        first item of a session opened after the inputs (``h_N^con``, nothing of it seen yet);
        elsewhere the next item of the newest session (empty rows: a first session, nothing seen)."""
        B = inputs.shape[0]
        ctx = self.sessions(inputs, session_starts)
        e = self.user_distributions(users, B, inputs.device)["post_mean"]
        n = ctx.view.n_sessions
        rows, last = torch.arange(B, device=inputs.device), (n - 1).clamp(min=0)
        new = new_session.to(device=inputs.device, dtype=torch.bool).view(B)
        closed = torch.where((n > 0).unsqueeze(-1), ctx.context[rows, last], torch.zeros_like(ctx.context[:, 0]))
        h_prev = torch.where(new.unsqueeze(-1), closed, ctx.h_prev[rows, last])
        items = ctx.view.items[rows, last].masked_fill(new.unsqueeze(-1), 0)
        lengths = ctx.view.lengths[rows, last].masked_fill(new, 0)
        z = self.z_prior_dist(h_prev, e)[0]
        out, index = self._decode(items, lengths, h_prev, z)
        return out[index[rows, lengths]]

    def user_representation(self, inputs: torch.Tensor, session_starts: torch.Tensor | None = None,
                            users: torch.Tensor | None = None, new_session: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, d]`` scoring the item after the newest input item: a continuation of the newest
        session, or, for rows whose ``new_session`` flag is set, the first item of a new session (the
        evaluator sets it when the target opens a session; the server when the caller says so)."""
        if new_session is None:
            new_session = torch.zeros(inputs.shape[0], dtype=torch.bool, device=inputs.device)
        return self._newest(inputs, session_starts, users, new_session)

    def next_session_representation(self, inputs: torch.Tensor, session_starts: torch.Tensor | None = None,
                                    users: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, d]`` scoring the first item of a new session after the inputs (next-session task)."""
        return self._newest(inputs, session_starts, users, torch.ones(inputs.shape[0], dtype=torch.bool, device=inputs.device))

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight


def _step_ids(shape: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    return torch.arange(shape[0] * shape[1], device=device).view(shape)


def _repack(packed: PackedSequence, data: torch.Tensor) -> PackedSequence:
    """``packed`` (of step ids) with its data replaced by per-step features in the same order."""
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
