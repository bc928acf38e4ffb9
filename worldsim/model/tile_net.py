"""TileWorldNet: a world model over tile tokens that shifts the view exactly, then fixes tiles.

One token per p x p patch of the frame. A step is three decisions, and a fourth for new ground:
1. **Shift and events.** A small transformer reads the last frame and the action and gives one
   categorical over the view displacements (none, and every one within `motion_radius`
   tokens). One shift is sampled for the whole frame and applied exactly: scrolling is
   copying, never redrawing. With named events (`TileConfig.events`, e.g. Crafter's
   achievements: collect wood, drink) it also tells which of them the action causes: the last
   frame shows what the player faces, so the event is known before the frame is drawn.
2. **Tiles.** A transformer reads the shifted frame (tiles that came into view are unknown),
   the frame before it, the memory of what was seen at each world position (so walking back
   restores the world), the action, the shift and the events (so the inventory counts up
   when wood is collected). Each token gets a categorical over "keep the
   shifted tile" plus the codebook of real tiles. Tokens are committed over `sampler_steps`
   rounds, most confident first, each round seeing what the earlier ones committed (MaskGIT),
   so a newly revealed row is drawn as a whole and not tile by tile.
3. **Reward and end.** A third transformer reads the last and the next frame's codes, which
   tiles show something never shown there before in the episode, and the action, and gives a
   categorical over the reward values seen in training, and a termination logit. The first
   time an event happens in a rollout pays `event_reward` on top (`pay_events`): the rollout
   remembers what it has paid, so a repeat (a second drink), which frames cannot tell apart
   from a first time, pays nothing.
4. **New ground** (`TileConfig.edge_prior`; worldsim/model/tile_edge.py). Where a revealed
   token has nothing in the memory, an edge prior can draw it instead of the tile net
   (`TileSampler.reveal` "edge"): one token at a time along the new edge, each from its 8
   neighbours known by then, so new ground comes in patches that join the view.

Design search and measurements: docs/tile_model_search.md.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldsim.actions import ActionEncoder
from worldsim.model.net import check_frames, pixels_to_x, x_to_pixels
from worldsim.model.tile_config import PART_NAMES, TileConfig, TileLoss
from worldsim.model.tile_edge import EdgePrior
from worldsim.model.tiles import (
    NO_CODE,
    age_bucket,
    move_table,
    near_tokens,
    patch_rms,
    paying_events,
    shift_table,
    shift_tokens,
)

__all__ = ["MOVE_OPPOSITE", "TileWorldNet", "encode_last", "pay_events", "tile_choice"]

# The move head's choices: stay, then a tile's step to the neighbour (d_row, d_col) of
# `displacements(1)`: up, left, right, down; MOVE_OPPOSITE[j] is the step back.
MOVE_OPPOSITE = (0, 4, 3, 2, 1)
MOVE_KEY = 32  # width of the move head's query and key

# An event clock's say on a HUD token's change is this many times its table's entry. Adam
# moves an entry by about the learning rate a step, and an entry is trained only in the few
# batches that hold its (event, clock): unscaled, Crafter's energy coming back 11 steps after
# falling asleep (73% of falls) reached +0.9 log-odds after 1,000 steps at lr 5e-3, too little
# to turn a kept tile at temperature 0.
EVENT_HAZARD_GAIN = 8.0

# Each part (a network, or a head on the tile net: moves, HUD and event clocks) -> its
# parameters' prefix.
PARTS = {"shift": "s_", "tile": "t_", "move": "m_", "reward": "r_", "edge": "e_", "clock": "c_"}
assert tuple(PARTS) == PART_NAMES


def pay_events(fired: Tensor, paid: Tensor, event_reward: float) -> tuple[Tensor, Tensor]:
    """What events bool [B, E] firing pays, given those `paid` [B, E] before in the rollout:
    (`event_reward` where any fires for the first time, else 0 [B]; paid after the step)."""
    first = (fired & ~paid).any(-1)
    return first.float() * event_reward, paid | fired


def tile_choice(keep: Tensor, codes: Tensor) -> Tensor:
    """The likeliest choice of every token from `tile_logits` (keep [...], codes [..., K]):
    0 to keep the shifted tile (also on a tie), else 1 + the code."""
    best, code = codes.max(-1)
    return torch.where(keep >= best, 0, code + 1)


def _encoder(dim: int, depth: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)


def encode_last(body: nn.TransformerEncoder, x: Tensor) -> Tensor:
    """`body(x)[:, -1]` [B, d] for x [B, T, d], without the last layer's work on the other
    tokens: that layer attends from the last token alone and runs its feed-forward on it
    (a shift or reward net reads one token, so this saves most of a layer)."""
    for layer in body.layers[:-1]:
        x = layer(x)
    last = body.layers[-1]
    y = last.norm1(x)
    h = x[:, -1:] + last.self_attn(y[:, -1:], y, y, need_weights=False)[0]
    h = h + last.linear2(last.activation(last.linear1(last.norm2(h))))
    return body.norm(h[:, 0])


class TileWorldNet(nn.Module):
    """The tile world model's three networks, codebook and reward values.

    Args:
        config: the TileConfig.
        action_space: the game's action space (encoded by `worldsim.actions.ActionEncoder`).
        codebook: uint8 [K, p*p*C] real patches (training builds it from the data; a
            checkpoint restores it). None: zeros, to be loaded.
        reward_values: float [V] the reward values the reward head chooses among.
    """

    def __init__(
        self,
        config: TileConfig,
        action_space: gym.spaces.Space,
        codebook: np.ndarray | Tensor | None = None,
        reward_values: np.ndarray | Tensor | None = None,
    ) -> None:
        super().__init__()
        config.validate()
        self.config, self.action_space = config, action_space
        self.action_encoder = ActionEncoder(action_space)
        K, D, N, A = (
            config.codebook_size,
            config.patch_dim,
            config.tokens_per_frame,
            self.action_encoder.dim,
        )
        V, S = config.reward_classes, config.num_shifts
        book = torch.zeros(K, D, dtype=torch.uint8)
        if codebook is not None:
            given = torch.as_tensor(np.asarray(codebook), dtype=torch.uint8)
            book[: len(given)] = given
        self.register_buffer("codebook", book)
        values = torch.zeros(V)
        if reward_values is not None:
            rv = torch.as_tensor(np.asarray(reward_values), dtype=torch.float32)
            values[: len(rv)] = rv
        self.register_buffer("reward_values", values)
        # log(real frequency / training frequency) per reward class and for termination:
        # undoes the oversampling of rare events at inference.
        self.register_buffer("reward_prior", torch.zeros(V))
        self.register_buffer("end_prior", torch.zeros(()))
        E = len(config.events)
        if E:  # the same, per event (a net without events has none: releases before them)
            self.register_buffer("event_prior", torch.zeros(E))
        pays = paying_events({"names": config.events, "unpaid": config.unpaid_events})
        self.register_buffer("event_pays", torch.from_numpy(pays), persistent=False)
        source, valid = shift_table(
            *config.grid, config.fixed_rows, config.motion_radius, config.anchored_tokens
        )
        self.register_buffer("source", source, persistent=False)
        self.register_buffer("valid", valid, persistent=False)
        rows, cols = config.grid
        self.moving = (rows - config.fixed_rows) * cols  # tokens that scroll (first in order)

        d, ds, dr = config.dim, config.shift_dim, config.reward_dim
        # 1. shift net
        self.s_code = nn.Embedding(K + 1, ds)
        self.s_pix = nn.Linear(D, ds)
        self.s_act = nn.Linear(A, ds)
        self.s_pos = nn.Parameter(torch.randn(N + 1, ds) * 0.02)
        self.s_body = _encoder(ds, config.shift_depth, config.heads)
        self.s_head = nn.Linear(ds, S)
        self.s_events = nn.Linear(ds, E) if E else None
        # 2. tile net
        self.t_code = nn.Embedding(K + 1, d)  # K: unknown (came into view)
        self.t_pix = nn.Linear(D, d)
        self.t_prev = nn.Embedding(K + 1, d)
        self.t_mem = nn.Embedding(K + 1, d)  # K: nothing remembered
        self.t_age = nn.Embedding(config.memory_buckets, d)
        self.t_given = nn.Embedding(K + 2, d)  # 0: not committed, 1: kept, 2 + c: code c
        self.t_act = nn.Linear(A, d)
        self.t_shift = nn.Embedding(S, d)
        self.t_events = nn.Linear(E, d, bias=False) if E else None
        if E:
            nn.init.zeros_(self.t_events.weight)  # a release without events draws as before
        # The tiles beside the avatar told the events and the avatar's pixels, one embedding
        # per tile (TileConfig.near_anchor); zero-initialised, so a release draws as before.
        near = (
            near_tokens(config.anchored, *config.grid, config.fixed_rows)
            if config.near_anchor
            else []
        )
        anchors = config.anchored_tokens if near else []
        self.t_near = nn.Linear(E + D * len(anchors), d * len(near), bias=False) if near else None
        if self.t_near is not None:
            nn.init.zeros_(self.t_near.weight)
        self.register_buffer("near", torch.tensor(near, dtype=torch.long), persistent=False)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.long), persistent=False)
        # Each HUD token's clock (steps since its code last changed; 0: none seen), per token:
        # an embedding added to its input, and its say on the token's change at the output
        # (a timer's hazard: the log-odds that the tile changes at that clock, whatever the
        # map shows; a dreamed map must not talk the net out of a tick that is due).
        F_ = N - self.moving if config.hud_clock else 0
        self.c_clock = nn.Embedding(F_ * config.hud_clock, d) if F_ else None
        self.c_keep = nn.Embedding(F_ * config.hud_clock, 1) if F_ else None
        if self.c_clock is not None:
            nn.init.zeros_(self.c_clock.weight)  # a release without clocks draws as before
            nn.init.zeros_(self.c_keep.weight)
            self.register_buffer("c_base", torch.arange(F_) * config.hud_clock, persistent=False)
        # Each event's clock (steps since it last happened; 0: not yet), read by the tile net
        # through an embedding of each (event, clock) pair added to the step's token, and
        # with its say on each HUD token's change, per (event, clock, token): a beat that
        # starts at an event.
        F_e = (N - self.moving) if config.event_clock and E else 0
        self.c_event = nn.Embedding(E * config.event_clock, d) if F_e else None
        self.c_event_keep = nn.Embedding(E * config.event_clock * F_e, 1) if F_e else None
        if self.c_event is not None:
            nn.init.zeros_(self.c_event.weight)  # a release without event clocks draws as before
            nn.init.zeros_(self.c_event_keep.weight)
            self.register_buffer(
                "c_event_base", torch.arange(E) * config.event_clock, persistent=False
            )
        self.t_pos = nn.Parameter(torch.randn(N + 1, d) * 0.02)
        self.t_body = _encoder(d, config.depth, config.heads)
        self.t_keep = nn.Linear(d, 1)
        self.t_codes = nn.Linear(d, K)
        nn.init.zeros_(self.t_keep.weight)
        nn.init.constant_(self.t_keep.bias, 4.0)  # start out keeping the frame
        self.m_move = nn.Linear(d, len(MOVE_OPPOSITE)) if config.object_moves else None
        # ...and a pointer score of each mover against what it would step onto (a cow onto
        # grass, not into a tree): query of the token, key of the neighbour.
        self.m_move_qk = nn.Linear(d, 2 * MOVE_KEY) if config.object_moves else None
        if self.m_move is not None:
            nn.init.zeros_(self.m_move.weight)
            nn.init.constant_(self.m_move.bias, 0.0)
            self.m_move.bias.data[0] = 4.0  # start out staying
            m_source, m_valid = move_table(*config.grid, config.fixed_rows, config.anchored_tokens)
            m_valid[:, self.moving :] = False  # the fixed rows hold no moving tiles
            self.register_buffer("move_source", m_source, persistent=False)
            self.register_buffer("move_valid", m_valid, persistent=False)
        # 3. reward net
        self.r_last = nn.Embedding(K, dr)
        self.r_next = nn.Embedding(K, dr)
        self.r_new = nn.Embedding(2, dr)
        self.r_act = nn.Linear(A, dr)
        self.r_pos = nn.Parameter(torch.randn(N + 1, dr) * 0.02)
        self.r_body = _encoder(dr, config.reward_depth, config.heads)
        self.r_head = nn.Linear(dr, V + 1)
        # 4. edge prior: new ground, drawn from its neighbours (TileSampler.reveal "edge")
        self.e_prior = EdgePrior(K) if config.edge_prior else None

    # Parameters a release of the same net without them (trained before events, or without
    # the move head, edge prior or HUD clocks) leaves fresh.
    OPTIONAL_KEYS = ("s_events.", "t_events.", "t_near.", "event_prior", "m_move.", "m_move_qk.",
                     "e_prior.", "c_clock.", "c_keep.", "c_event.", "c_event_keep.")  # fmt: skip

    def part_parameters(self, part: str) -> list[nn.Parameter]:
        """The parameters of one of the parts (`PARTS`)."""
        return [p for k, p in self.named_parameters() if k.startswith(PARTS[part])]

    # ------------------------------------------------------------------ frames and actions
    @property
    def device(self) -> torch.device:
        return self.codebook.device

    def check_frames(self, frames: Any, ndim: int = 5) -> Tensor:
        c = self.config
        return check_frames(frames, (c.height, c.width, c.channels), self.device, ndim)

    def frames_to_x(self, frames: Any) -> Tensor:
        """uint8 frames [B, T, H, W, C] -> x [B, T, C, H, W] in [-1, 1] (the rollout's frames)."""
        return pixels_to_x(self.check_frames(frames))

    def x_to_frames(self, x: Tensor) -> Tensor:
        return x_to_pixels(x)

    def encode_actions(self, actions: Any) -> Tensor:
        return self.action_encoder.encode(actions)

    # ------------------------------------------------------------------ the three nets
    def shift_logits(self, code: Tensor, pix: Tensor, action: Tensor) -> Tensor:
        """[B, S] logits of the view shift from the last frame (codes [B, N], uint8 pixels
        [B, N, D]) and the encoded action [B, A]."""
        return self.step_logits(code, pix, action)[0]

    def step_logits(self, code: Tensor, pix: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """The shift net's logits: of the view shift [B, S] and of each event [B, E] (priors
        not applied), from the last frame and the encoded action (as `shift_logits`)."""
        x = self.s_code(code) + self.s_pix(pix.float() / 127.5 - 1)
        x = torch.cat([x, self.s_act(action)[:, None]], 1) + self.s_pos
        h = encode_last(self.s_body, x)
        events = self.s_events(h) if self.s_events is not None else h[:, :0]
        return self.s_head(h), events

    def fire_events(
        self, logits: Tensor, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Which events happen, bool [B, E], from `step_logits`' event logits: the likelier
        outcome of each at temperature 0, else drawn with its probability (at 1: as often as
        the model expects, e.g. Crafter's sapling, given on a tenth of the tries)."""
        if not logits.shape[-1]:
            return logits > 0
        z = logits + self.event_prior
        if temperature <= 0:
            return z > 0
        where = generator.device if generator is not None else z.device
        u = torch.rand(z.shape, generator=generator, device=where).to(z.device)
        return u < torch.sigmoid(z / temperature)

    def shifted(self, tensor: Tensor, shift: Tensor, fill: Any) -> Tensor:
        """Tokens [B, N, ...] moved by shift classes [B]; revealed tokens get `fill`."""
        return shift_tokens(tensor, shift, self.source, self.valid, fill)

    def shift_inputs(
        self, pix: Tensor, code: Tensor, prev_code: Tensor, prev_shift: Tensor, shift: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The tile net's view of a step: the last frame's pixels [B, N, D] and codes [B, N]
        moved by `shift` (revealed tokens: zeros / code K, unknown), and the codes of the frame
        before it moved by its own shift and then by `shift`, into the same view."""
        K = self.config.codebook_size
        pix_sh = self.shifted(pix, shift, 0)
        code_sh = self.shifted(code, shift, K)
        prev_sh = self.shifted(self.shifted(prev_code, prev_shift, K), shift, K)
        return pix_sh, code_sh, prev_sh

    def tile_logits(
        self,
        code_sh: Tensor,
        pix_sh: Tensor,
        prev_sh: Tensor,
        mem_code: Tensor,
        mem_age: Tensor,
        given: Tensor,
        action: Tensor,
        shift: Tensor,
        events: Tensor | None = None,
        clock: Tensor | None = None,
        event_clock: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Every token's logits of keeping the shifted tile [B, N] and of each code [B, N, K]
        (apart: one [B, N, 1 + K] tensor would be a copy of the largest tensor of a step),
        and of its tile's move [B, N, 5] (stay or a step; None without `object_moves`).

        Args: shifted last codes [B, N] (K: unknown) and pixels [B, N, D]; the frame before,
        shifted to the same view [B, N]; memory codes/ages of the scrolling tokens [B, n]
        (NO_CODE / 0: none); committed choices [B, N] (0 none, 1 keep, 2 + c code c); encoded
        action [B, A]; shift classes [B]; the events that happen, bool [B, E] (None: none);
        the fixed-row tokens' clocks [B, N - moving] (`TileConfig.hud_clock`; None: none seen);
        the events' clocks [B, E] (`TileConfig.event_clock`; None: none seen).
        """
        K, cfg = self.config.codebook_size, self.config
        B, N = code_sh.shape
        mem = torch.full((B, N), K, dtype=torch.long, device=code_sh.device)
        mem[:, : self.moving] = torch.where(mem_code == NO_CODE, K, mem_code)
        age = torch.zeros((B, N), dtype=torch.long, device=code_sh.device)
        age[:, : self.moving] = age_bucket(mem_age, cfg.memory_buckets)
        pix = pix_sh.float() / 127.5 - 1
        x = (
            self.t_code(code_sh)
            + self.t_pix(pix)
            + self.t_prev(prev_sh)
            + self.t_mem(mem)
            + self.t_age(age)
            + self.t_given(given)
        )
        if self.t_near is not None:  # the avatar's events and look, to the tiles beside it
            ev = torch.zeros(B, len(cfg.events), device=x.device) if events is None else events
            look = pix[:, self.anchors].flatten(1)
            near = self.t_near(torch.cat([ev.float(), look], 1)).view(B, len(self.near), -1)
            x = x.index_add(1, self.near, near)
        at = None
        if self.c_clock is not None and clock is not None:
            at = self.c_base + clock.clamp(0, cfg.hud_clock - 1)
            hud = x[:, self.moving :] + self.c_clock(at)
            x = torch.cat([x[:, : self.moving], hud], 1)
        step = self.t_act(action) + self.t_shift(shift)
        if self.t_events is not None and events is not None:
            step = step + self.t_events(events.float())
        ev_at = None
        if self.c_event is not None and event_clock is not None:
            ev_at = self.c_event_base + event_clock.long().clamp(0, cfg.event_clock - 1)  # [B, E]
            step = step + self.c_event(ev_at).sum(1)
        x = torch.cat([x, step[:, None]], 1) + self.t_pos
        h = self.t_body(x)[:, :N]
        keep = self.t_keep(h)[..., 0]
        if at is not None or ev_at is not None:  # the clocks' say on the HUD tokens' change
            hud = keep[:, self.moving :]
            if at is not None:
                hud = hud - self.c_keep(at)[..., 0]
            if ev_at is not None:
                F_ = N - self.moving
                ev_hud = (ev_at * F_)[..., None] + torch.arange(F_, device=ev_at.device)
                hud = hud - EVENT_HAZARD_GAIN * self.c_event_keep(ev_hud)[..., 0].sum(1)
            keep = torch.cat([keep[:, : self.moving], hud], 1)
        keep = keep.masked_fill(code_sh == K, -1e4)
        moves = None
        if self.m_move is not None:  # a tile moves only within the view, from a known place
            ok = self.move_valid.T[None] & (code_sh != K)[..., None]  # [B, N, 5]
            ok[..., 0] = True
            q, k = self.m_move_qk(h).chunk(2, -1)
            onto = [torch.zeros_like(q[..., 0])] + [
                (q * self.move_gather(k, j, 0)).sum(-1) / MOVE_KEY**0.5
                for j in range(1, len(MOVE_OPPOSITE))
            ]
            moves = (self.m_move(h) + torch.stack(onto, -1)).masked_fill(~ok, -1e4)
        return keep, self.t_codes(h), moves

    def same_tile(self, a: Tensor, b: Tensor) -> Tensor:
        """Whether patches a and b [..., D] draw the same tile: within `match_rms` (RMS, 0-255)."""
        return patch_rms(a, b) < self.config.match_rms

    def move_gather(self, tensor: Tensor, j: int, fill: Any) -> Tensor:
        """tensor [B, N, ...] read one step j (a move choice) away: out[t] = tensor[t + d_j];
        `fill` where that is outside the moving tokens."""
        src, ok = self.move_source[j], self.move_valid[j]
        out = tensor[:, src]
        mask = ok.view(1, -1, *([1] * (tensor.dim() - 2)))
        return torch.where(
            mask, out, torch.as_tensor(fill, dtype=tensor.dtype, device=tensor.device)
        )

    def move_targets(self, code_sh: Tensor, pix_sh: Tensor, pix_next: Tensor) -> Tensor:
        """The move each token's tile made [B, N] (0: none; j: to the neighbour d_j, which
        showed something else and now shows this tile, while the token itself changed), with
        tiles matched by pixels within `match_rms` as the tile loss matches them (two codes
        can draw one tile). Of a swap (a cow steps off grass onto grass: each tile now shows
        the other's), the rarer tile moves: codes are ordered most frequent first, and the
        ground is the frequent one."""
        K, same = self.config.codebook_size, self.same_tile
        target = torch.zeros_like(code_sh)
        known = code_sh != K
        changed = known & ~same(pix_sh, pix_next)
        for j in range(1, len(MOVE_OPPOSITE)):
            there_now = self.move_gather(pix_sh, j, 0)
            there_known = self.move_gather(known, j, False)
            arrived = same(self.move_gather(pix_next, j, 0), pix_sh)
            other = ~same(there_now, pix_sh)
            swap = same(pix_next, there_now)
            rarer = code_sh > self.move_gather(code_sh, j, K)
            moved = changed & there_known & arrived & other & (target == 0) & (~swap | rarer)
            target = torch.where(moved, j, target)
        return target

    def reward_logits(
        self, code_last: Tensor, code_next: Tensor, new: Tensor, action: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Reward-class logits [B, V] and termination logit [B] (priors not applied)."""
        x = self.r_last(code_last) + self.r_next(code_next) + self.r_new(new.long())
        x = torch.cat([x, self.r_act(action)[:, None]], 1) + self.r_pos
        out = self.r_head(encode_last(self.r_body, x))
        return out[:, :-1], out[:, -1]

    def predict_reward(
        self,
        code_last: Tensor,
        code_next: Tensor,
        new: Tensor,
        action: Tensor,
        events: Tensor | None = None,
        paid: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Rewards [B] (the likeliest value, plus `event_reward` where one of the `events`
        bool [B, E] that happen is not in `paid` [B, E] nor in `config.unpaid_events`; None:
        none) and termination probabilities [B]."""
        logits, end = self.reward_logits(code_last, code_next, new, action)
        reward = self.reward_values[(logits + self.reward_prior).argmax(-1)]
        if events is not None and events.shape[-1]:
            paid = torch.zeros_like(events) if paid is None else paid.to(events.device)
            paying = events & self.event_pays.to(events.device)  # unpaid events never pay
            reward = reward + pay_events(paying, paid, self.config.event_reward)[0]
        return reward, torch.sigmoid(end + self.end_prior)

    # ------------------------------------------------------------------ training
    def training_loss(
        self,
        batch: dict[str, Any],
        generator: torch.Generator | None = None,
        *,
        loss: TileLoss | None = None,
    ) -> dict:
        """Losses of a batch of transitions (see training/tile_data.py for the fields), with
        the settings `loss` (None: TileLoss's defaults); the networks not in its `parts` are
        skipped."""
        lc = TileLoss() if loss is None else loss
        action = self.encode_actions(batch["action"]).to(self.device)
        pix, code = batch["pix"], batch["code"].long()
        shift = batch["shift"].long()
        out: dict[str, Tensor] = {}
        total = torch.zeros((), device=self.device)
        if "shift" in lc.parts:
            s_logits, ev_logits = self.step_logits(code, pix, action)
            shift_loss = F.cross_entropy(s_logits, shift)
            total = total + shift_loss
            out["shift"] = shift_loss.detach()
            out["shift_acc"] = (s_logits.argmax(-1) == shift).float().mean()
            if ev_logits.shape[-1]:
                events = batch["events"].float().to(ev_logits.device)
                ev_loss = F.binary_cross_entropy_with_logits(
                    ev_logits, events, reduction="sum"
                ) / len(events)  # summed over events: one event weighs like one class choice
                total = total + ev_loss
                out["events"] = ev_loss.detach()
                hit = (ev_logits > 0) == events.bool()
                out["events_acc"] = hit.all(-1).float().mean()
        clocks = self.c_clock is not None or self.c_event is not None
        heads = ("move" in lc.parts and self.m_move is not None) or ("clock" in lc.parts and clocks)
        if "tile" in lc.parts or heads:
            tile = self._tile_loss(batch, action, lc, generator)
            total = total + tile.pop("loss")
            out.update(tile)
        if "reward" in lc.parts:
            r_logits, end_logit = self.reward_logits(
                code, batch["code_next"].long(), batch["new_next"], action
            )
            reward_loss = F.cross_entropy(r_logits, batch["reward_class"].long())
            end_loss = F.binary_cross_entropy_with_logits(end_logit, batch["terminated"].float())
            total = total + lc.reward_weight * (reward_loss + end_loss)
            out["reward"], out["termination"] = reward_loss.detach(), end_loss.detach()
            out["reward_acc"] = (r_logits.argmax(-1) == batch["reward_class"]).float().mean()
        if "edge" in lc.parts and self.e_prior is not None:
            rows = self.config.grid[0] - self.config.fixed_rows
            grids = torch.cat([code, batch["code_next"].long()])[:, : self.moving]
            edge_loss, out["edge_acc"] = self.e_prior.loss(
                grids.view(len(grids), rows, -1), max(1, self.config.motion_radius), generator
            )
            total = total + edge_loss
            out["edge"] = edge_loss.detach()
        return {"loss": total, **out}

    def _noisy_context(
        self,
        code_sh: Tensor,
        pix_sh: Tensor,
        prev_sh: Tensor,
        share: float,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """`TileLoss.context_noise`: up to `share` (uniform per transition) of the scrolling
        tokens the previous step revealed (unknown in the frame before, in view now) get
        another transition's tile at the same place, a real tile in the wrong world."""
        K, (B, N) = self.config.codebook_size, code_sh.shape
        dev = code_sh.device
        last_revealed = (prev_sh == K) & (code_sh != K)
        last_revealed[:, self.moving :] = False
        ratio = torch.rand(B, 1, generator=generator, device=dev) * share
        hit = last_revealed & (torch.rand(B, N, generator=generator, device=dev) < ratio)
        other = code_sh[torch.randperm(B, generator=generator, device=dev)]
        hit &= other != K
        code = torch.where(hit, other, code_sh)
        pix = torch.where(hit[..., None], self.codebook[other.clamp(max=K - 1)], pix_sh)
        return code, pix

    def _rollout_clocks(
        self, batch: dict[str, Any], generator: torch.Generator | None
    ) -> tuple[Tensor | None, Tensor | None]:
        """The data's HUD clocks [B, F] (steps since each token's code last changed in the
        episode, 0 before its first change) and event clocks [B, E] (steps since each event
        last happened) as a rollout would know them: one that starts in the middle of an
        episode has seen only its own steps, so half the transitions have their clocks cut at
        a history of 1..cap steps (0 where the change or event came before). (None, None)
        for clocks the net or the batch lacks."""
        cfg = self.config
        clock = batch.get("clock") if self.c_clock is not None else None
        ev_clock = batch.get("event_clock") if self.c_event is not None else None
        if clock is None and ev_clock is None:
            return None, None
        given = clock if clock is not None else ev_clock
        B, dev = len(given), given.device
        cap = max(cfg.hud_clock, cfg.event_clock)
        history = torch.randint(1, cap + 1, (B, 1), generator=generator, device=dev)
        cut = torch.rand(B, 1, generator=generator, device=dev) < 0.5
        out = [
            None if c is None else torch.where(cut & (c.long() > history), 0, c.long())
            for c in (clock, ev_clock)
        ]
        return out[0], out[1]

    def _tile_loss(
        self,
        batch: dict[str, Any],
        action: Tensor,
        lc: TileLoss,
        generator: torch.Generator | None,
    ) -> dict[str, Tensor]:
        """The tile net's loss (likelihood of the right choices) and accuracies."""
        cfg, K = self.config, self.config.codebook_size
        pix, code = batch["pix"], batch["code"].long()
        shift = batch["shift"].long()

        pix_sh, code_sh, prev_sh = self.shift_inputs(
            pix, code, batch["prev_code"].long(), batch["prev_shift"].long(), shift
        )
        if lc.context_noise > 0:
            code_sh, pix_sh = self._noisy_context(
                code_sh, pix_sh, prev_sh, lc.context_noise, generator
            )
        revealed = code_sh == K
        nxt, code_next = batch["pix_next"], batch["code_next"].long()
        keep_ok = ~revealed & self.same_tile(pix_sh, nxt)
        code_ok = (batch["code_err_next"] < cfg.match_rms) | ~keep_ok
        B, N = code.shape
        rand = torch.rand(B, N, generator=generator, device=code.device)
        ratio = torch.rand(B, 1, generator=generator, device=code.device) * lc.given
        committed = rand < ratio  # MaskGIT: a random share of tokens is given
        if "tile" not in lc.parts:
            # A head alone (move, clock) learns from the step a one-round sampler draws,
            # nothing committed: trained with answers given, the move head leant on them and
            # moved tiles half as often as the game does once they were not.
            committed = torch.zeros_like(committed)
        trained = batch.get("loss_mask")  # self forcing: where the dream agrees with the game
        if trained is not None:
            committed &= trained
        target = torch.where(keep_ok, torch.ones_like(code_next), code_next + 2)
        given = torch.where(committed, target, torch.zeros_like(target))
        keep_logit, codes_logits, move_logits = self.tile_logits(
            code_sh,
            pix_sh,
            prev_sh,
            batch["mem_code"].long(),
            batch["mem_age"].long(),
            given,
            action,
            shift,
            batch.get("events"),  # the real events: the net learns to draw what they show
            *self._rollout_clocks(batch, generator),
        )
        code_logit = codes_logits.gather(-1, code_next[..., None])[..., 0]
        right = torch.logaddexp(
            keep_logit.masked_fill(~keep_ok, -1e9), code_logit.masked_fill(~code_ok, -1e9)
        )
        per_token = torch.logaddexp(keep_logit, torch.logsumexp(codes_logits, -1)) - right
        changed = ~keep_ok & ~revealed
        todo = (~committed).float() * torch.where(changed, lc.change_weight, 1.0)
        if trained is not None:
            todo = todo * trained
        tile_loss = (per_token * todo).sum() / todo.sum().clamp(min=1)
        loss = tile_loss if {"tile", "clock"} & set(lc.parts) else torch.zeros_like(tile_loss)
        moves: dict[str, Tensor] = {}
        if move_logits is not None:
            move_target = self.move_targets(code_sh, pix_sh, nxt)
            known = ~revealed
            known[:, self.moving :] = False
            move_loss = F.cross_entropy(move_logits[known], move_target[known])
            if "move" in lc.parts:
                loss = loss + move_loss
            real = move_target > 0
            told = (move_logits.argmax(-1) == move_target) & real
            moves = {"move": move_loss.detach(),
                     "move_recall": told.float().sum() / real.float().sum().clamp(min=1)}  # fmt: skip
        with torch.no_grad():
            choice = tile_choice(keep_logit, codes_logits)
            right_choice = torch.where(choice == 0, keep_ok, code_ok & (choice - 1 == code_next))
        return {
            "loss": loss,
            "tile": tile_loss.detach(),
            "tile_acc": right_choice.float().mean()
            if trained is None
            else (right_choice & trained).float().sum() / trained.float().sum().clamp(min=1),
            "revealed_acc": (right_choice & revealed).float().sum() / revealed.sum().clamp(min=1),
            **moves,
        }
