"""Rollouts of a TileWorldNet: shift, recall, commit tiles in rounds, read the reward.

`TileRollout` has the interface of the diffusion `Rollout` (`start`, `next`), so `WorldModel`
drives both the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from worldsim.errors import WorldsimError
from worldsim.model.net import pixels_to_x
from worldsim.model.tile_config import TileSampler
from worldsim.model.tile_net import MOVE_OPPOSITE, TileWorldNet, tile_choice
from worldsim.model.tiles import (
    NO_CODE,
    Canvas,
    displacements,
    frames_to_patches,
    hud_clocks,
    nearest_codes,
    novelty,
    patch_rms,
    patches_to_frames,
    remember,
    same_tile_codes,
    shift_from_pixels,
    tick_clock,
)

__all__ = ["Given", "TileGroups", "TileRollout", "TileRolloutState"]


@dataclass
class TileRolloutState:
    """The last frame (pixels, patches, codes), the codes and shift before it, the memory of
    the world seen so far, which code each token has shown in this rollout, and which of the
    model's events (TileConfig.events) the rollout has paid: `paid` may be set to what the
    real episode had unlocked before the context, else a rollout starts with none paid; and
    the HUD's clocks (TileConfig.hud_clock: steps since each fixed-row token last changed) and
    the events' clocks (TileConfig.event_clock: steps since each event last happened; a rollout
    starts with none seen)."""

    frame: Tensor  # uint8 [B, H, W, C]
    pix: Tensor  # uint8 [B, N, D]
    code: Tensor  # long [B, N]
    prev_code: Tensor  # long [B, N]
    prev_shift: Tensor  # long [B]
    canvas: Canvas
    seen: Tensor  # bool [B, N, K]
    paid: Tensor  # bool [B, E]
    clock: Tensor  # long [B, F]
    event_clock: Tensor  # long [B, E]

    def assign(self, rows: Tensor, other: TileRolloutState) -> None:
        """Replace the rollouts `rows` (long [b]) with those of `other` (b rollouts)."""
        names = ("frame", "pix", "code", "prev_code", "prev_shift", "seen", "paid", "clock")
        for name in (*names, "event_clock"):
            getattr(self, name)[rows] = getattr(other, name)
        self.canvas.assign(rows, other.canvas)


@dataclass
class Given:
    """What a step is told instead of choosing it (generative tools: worldsim/generate/).

    shift: long [B] the view shift class of every rollout (None: the shift net samples it).
    events: bool [B, E] the model's events that happen (None: the shift net fires them).
    patches / mask: uint8 [B, N, D] and bool [B, N]: the tiles at `mask` are committed before
        the rounds (kept where the shifted tile already shows the patch within `match_rms`, as
        in training; else its nearest code); the net fills the others around them.
    hide: bool [B, N]: tokens the net must draw afresh, as if they had just come into view
        (their tile and their memory are hidden from it).
    allowed: bool [K]: the codes the net may choose (None: all), e.g. the map's tiles only.
    """

    shift: Tensor | None = None
    events: Tensor | None = None
    patches: Tensor | None = None
    mask: Tensor | None = None
    hide: Tensor | None = None
    allowed: Tensor | None = None


def _gumbel(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=where).to(device)
    return -torch.log(-torch.log(u.clamp(1e-9, 1 - 1e-9)))


def _nucleus(logits: Tensor, top_p: float | Tensor) -> Tensor:
    """logits [..., V] with every value outside the top-p nucleus (the likeliest values that
    together hold at least `top_p` of the probability: a float, or per row [...]) set to -inf."""
    ranked, order = logits.sort(-1, descending=True)
    probs = ranked.softmax(-1)
    top_p = torch.as_tensor(top_p, dtype=probs.dtype, device=probs.device)
    outside = probs.cumsum(-1) - probs >= top_p[..., None]  # the mass before it reaches top_p
    return logits.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), -torch.inf)


def _choose(
    logits: Tensor,
    temperature: float | Tensor,
    generator: torch.Generator | None,
    top_p: float | Tensor = 1.0,
) -> Tensor:
    """A choice from logits [..., V] at `temperature` (a float, or per row [...]): the argmax
    where it is 0, else a Gumbel-max sample, from the top-p nucleus where `top_p` (a float, or
    per row) < 1 (the argmax is always in it, so only a sample sorts the logits)."""
    t = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
    choice = logits.argmax(-1)
    if bool((t > 0).any()):
        if bool((torch.as_tensor(top_p) < 1).any()):
            logits = _nucleus(logits, top_p)
        gumbel = _gumbel(logits.shape, generator, logits.device)
        sampled = (logits / t.clamp(min=1e-6)[..., None] + gumbel).argmax(-1)
        choice = torch.where(t > 0, sampled, choice)
    return choice


@dataclass
class TileGroups:
    """The codes that draw one tile (`same_tile_codes` within `rms`), for choosing a token's
    likeliest tile rather than its likeliest code (`TileSampler.twin_rms`)."""

    twins_of: Tensor  # long [2, P]: the twin pairs (code, twin) of `same_tile_codes`
    codebook: Tensor  # uint8 [K, D]
    rms: float

    @classmethod
    def of(cls, codebook: Tensor, rms: float) -> TileGroups:
        return cls(same_tile_codes(codebook, rms), codebook, rms)

    def twins(self, a: Tensor, b: Tensor) -> Tensor:
        """Whether codes a and b [...] draw one tile."""
        return patch_rms(self.codebook[a], self.codebook[b]) < self.rms

    def likeliest(
        self, keep: Tensor, codes: Tensor, code_sh: Tensor, with_prob: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Every token's likeliest tile from `TileWorldNet.tile_logits` (keep [B, N], codes
        [B, N, K]) and the shifted codes [B, N] (K: unknown): (0 keep or 1 + code [B, N]; the
        tile's probability [B, N]; without `with_prob`, 1 where keep is sure). A tile's
        probability is the sum over its codes, keep counted with the shifted tile's. Where
        keep holds more than half it wins outright; only the other tokens are pooled."""
        K = codes.shape[-1]
        best, code = codes.max(-1)
        choice = torch.where(keep >= best, 0, code + 1)  # tile_choice, reusing `best`
        # Keep holds more than half for sure where it beats every code by log K: without
        # `with_prob` only the other tokens need keep's probability.
        need = torch.ones_like(choice, dtype=torch.bool) if with_prob else keep - best < math.log(K)
        near = need.nonzero(as_tuple=True)
        lse = torch.logaddexp(keep[near], torch.logsumexp(codes[near], -1))
        prob = torch.ones_like(keep)
        prob[near] = torch.exp(keep[near] - lse)
        open_ = prob[near] <= 0.5
        at = tuple(i[open_] for i in near)
        if not len(at[0]):
            return choice, prob
        k, c, sh, z = keep[at], codes[at], code_sh[at], lse[open_]
        p, p_keep = torch.exp(c - z[:, None]), torch.exp(k - z)
        known = sh != K
        rows = torch.arange(len(sh), device=sh.device)
        p.index_put_((rows[known], sh[known]), p_keep[known], accumulate=True)
        score = p.index_add(1, self.twins_of[0], p[:, self.twins_of[1]])  # each code's tile's
        top, star = score.max(-1)
        as_shifted = known & self.twins(star, sh.clamp(max=K - 1))
        alone = ~known & (p_keep >= top)  # keep of an unknown tile is a tile of its own
        choice[at] = torch.where(as_shifted | alone, 0, star + 1)
        prob[at] = torch.where(alone, p_keep, top)
        return choice, prob


def _choose_tiles(
    keep: Tensor,
    codes: Tensor,
    temperature: Tensor,
    generator: torch.Generator | None,
    with_prob: bool = True,
    groups: TileGroups | None = None,
    code_sh: Tensor | None = None,
    top_p: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Every token's choice from its [keep, codes] logits (`TileWorldNet.tile_logits`), given
    apart: (the choice [B, N], 0 keep or 1 + code; its probability at temperature 1, or None
    without `with_prob`). At temperature 0 the likeliest code, or with `groups` (and the
    shifted codes `code_sh`) the likeliest tile, its probability the tile's. Only the tokens
    sampled (temperature > 0 [B, N], e.g. the revealed ones) draw noise, from each token's
    top-p nucleus (`top_p` [B, N]; None: every choice): a [B, N, 1 + K] Gumbel tensor a step
    would halve the dream's speed."""
    hot = temperature.to(keep.device) > 0
    if groups is not None and code_sh is not None:
        choice, prob = groups.likeliest(keep, codes, code_sh, with_prob)
        redo = hot  # the sampled tokens' probability is their code's
    else:
        choice, prob, redo = tile_choice(keep, codes), None, torch.ones_like(hot)
    if bool(hot.any()):
        joined = torch.cat([keep[hot][:, None], codes[hot]], -1)
        nucleus = 1.0 if top_p is None else top_p.to(keep)[hot]
        choice[hot] = _choose(joined, temperature.to(keep)[hot], generator, nucleus)
    if not with_prob:
        return choice, None
    prob = torch.zeros_like(keep) if prob is None else prob
    if bool(redo.any()):
        k, c, ch = keep[redo], codes[redo], choice[redo]
        log_z = torch.logaddexp(k, torch.logsumexp(c, -1))
        chosen = torch.where(ch == 0, k, c.gather(-1, (ch - 1).clamp(min=0)[:, None])[:, 0])
        prob[redo] = torch.exp(chosen - log_z)
    return choice, prob


class TileRollout:
    """Generates frames from a TileWorldNet, one frame at a time.

    Args:
        net: the network (eval mode is the caller's business).
        use_cache: accepted for the Rollout interface; a tile step has nothing to cache.
        sampler: the sampling settings (None: TileSampler's defaults); `next`'s steps
            override its commit rounds per call.
    """

    def __init__(
        self, net: TileWorldNet, use_cache: bool = True, sampler: TileSampler | None = None
    ) -> None:
        self.net, self.config = net, net.config
        self.sampler = TileSampler() if sampler is None else sampler
        rows, cols = self.config.grid
        self.rows, self.cols = rows - self.config.fixed_rows, cols
        self.disp = torch.tensor(displacements(self.config.motion_radius), device=net.device)
        self._groups: TileGroups | None = None

    @property
    def groups(self) -> TileGroups | None:
        """The codebook's tile groups at the sampler's `twin_rms` (None at 0), built once per
        setting: the codebook is the net's and does not change under a rollout."""
        rms = self.sampler.twin_rms
        if rms <= 0:
            return None
        if self._groups is None or self._groups.rms != rms:
            self._groups = TileGroups.of(self.net.codebook, rms)
        return self._groups

    def start(self, x: Tensor, actions: Tensor) -> TileRolloutState:
        """A state primed with context x [B, K>=1, C, H, W] (the rollout's frames in [-1, 1]);
        every context frame is remembered, the shifts between them read off the pixels."""
        if x.shape[1] < 1:
            raise WorldsimError(
                "a tile world model starts from a real frame: pass at least one context frame "
                "(it cannot denoise a clip from nothing)"
            )
        net = self.net
        frames = net.x_to_frames(x)  # [B, K, H, W, C]
        patches = frames_to_patches(frames, self.config.patch)  # [B, K, N, D]
        codes = nearest_codes(patches, net.codebook)[0]
        shifts = torch.as_tensor(shift_from_pixels(patches, net.source, net.valid), device=x.device)
        return self.start_tokens(patches[:, -1], codes, shifts, frames[:, -1])

    def start_tokens(
        self, pix: Tensor, codes: Tensor, shifts: Tensor, frame: Tensor | None = None
    ) -> TileRolloutState:
        """A state primed with context tokens: the last frame's patches pix [B, N, D] (uint8),
        every context frame's codes [B, K, N] and the shift classes between them [B, K-1];
        `frame` [B, H, W, C] (uint8) draws the border a patch grid leaves (None: black)."""
        cfg, dev = self.config, codes.device
        B, K = codes.shape[:2]
        if frame is None:
            frame = torch.zeros(
                B, cfg.height, cfg.width, cfg.channels, dtype=torch.uint8, device=dev
            )
        canvas = Canvas(B, self.rows, self.cols, device=dev, anchored=cfg.anchored_tokens)
        seen = torch.zeros(B, cfg.tokens_per_frame, cfg.codebook_size, dtype=torch.bool, device=dev)
        remember(codes, shifts, canvas, seen, self.disp)
        prev = codes[:, -2] if K > 1 else codes[:, -1]
        prev_shift = shifts[:, -1] if K > 1 else torch.zeros(B, dtype=torch.long, device=dev)
        paid = torch.zeros(B, len(cfg.events), dtype=torch.bool, device=dev)
        clock = hud_clocks(codes[:, :, self.net.moving :])[:, -1]
        return TileRolloutState(
            frame,
            pix,
            codes[:, -1],
            prev,
            prev_shift,
            canvas,
            seen,
            paid,
            clock,
            torch.zeros_like(paid, dtype=torch.long),
        )

    def shift_classes(self, motion: Tensor) -> Tensor:
        """View displacements [..., 2] (d_row, d_col tokens) -> shift classes [...] of the
        shift net; WorldsimError for one beyond `motion_radius` (a view cannot jump)."""
        hit = (motion.to(self.disp)[..., None, :] == self.disp).all(-1)  # [..., S]
        if not bool(hit.any(-1).all()):
            far = motion.reshape(-1, 2)[~hit.any(-1).reshape(-1)][0].tolist()
            raise WorldsimError(
                f"a view motion of {far} tiles: this model moves its view at most "
                f"{self.config.motion_radius} tile(s) a step; pass motions within that"
            )
        return hit.long().argmax(-1)

    def remember_at(self, state: TileRolloutState, x: Tensor, offset: Tensor) -> None:
        """Write frames x [B, C, H, W] into the world memory as seen from the view offset
        [B, 2] (d_row, d_col tiles from the current view): a walk there then finds them."""
        codes = nearest_codes(frames_to_patches(self.net.x_to_frames(x[:, None])[:, 0],
                                                self.config.patch), self.net.codebook)[0]  # fmt: skip
        offset = offset.to(state.canvas.origin)
        state.canvas.move(offset)
        state.canvas.write(codes[:, : self.net.moving])
        state.canvas.move(-offset)

    def restart(self, state: TileRolloutState, rows: Tensor, x: Tensor, actions: Tensor) -> None:
        """Start the rollouts `rows` (long [b]) of `state` afresh from context x [b, K, C, H, W]
        (as `start`); the other rollouts, their memory included, go on untouched."""
        state.assign(rows.to(state.code.device), self.start(x, actions))

    def _move(
        self,
        step: Tensor,
        code_sh: Tensor,
        pix_sh: Tensor,
        code_next: Tensor,
        pix_next: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Carry out the move head's choices `step` [B, N]: a tile that steps to neighbour j
        swaps places with the tile there (a cow steps onto the grass and the grass shows where
        it stood), so a move makes and loses nothing. A step lands only on a token that keeps
        its tile and does not move itself, one move per token."""
        net, K = self.net, self.config.codebook_size
        if not bool((step > 0).any()):
            return code_next, pix_next
        still = (step == 0) & (code_next == code_sh) & (code_sh != K)
        taken = torch.zeros_like(still)
        for j in range(1, len(MOVE_OPPOSITE)):
            back = MOVE_OPPOSITE[j]
            land = net.move_gather(step == j, back, False) & still & ~taken
            left = net.move_gather(land, j, False)  # the tiles that landed, at their sources
            code_next = torch.where(land, net.move_gather(code_sh, back, K), code_next)
            pix_next = torch.where(land[..., None], net.move_gather(pix_sh, back, 0), pix_next)
            code_next = torch.where(left, net.move_gather(code_sh, j, K), code_next)
            pix_next = torch.where(left[..., None], net.move_gather(pix_sh, j, 0), pix_next)
            taken |= land | left
        return code_next, pix_next

    def _reveal_by_edge(
        self,
        given: Tensor,
        code_sh: Tensor,
        mem_code: Tensor,
        shift: Tensor,
        generator: torch.Generator | None,
        allowed: Tensor | None,
    ) -> Tensor:
        """`given` [B, N] with the scrolling tokens that came into view where the memory holds
        nothing committed to codes the edge prior draws (`TileSampler.reveal` "edge"), one at
        a time along the new edge at `reveal_temperature`, each seeing its neighbours: the
        tiles in view, those remembered and those committed or drawn before it."""
        net, K, M = self.net, self.config.codebook_size, self.net.moving
        if net.e_prior is None:
            raise WorldsimError(
                "sampler reveal 'edge' needs a model trained with an edge prior "
                "(TileConfig.edge_prior); use reveal 'net' with this one"
            )
        grid = torch.where(given[:, :M] >= 2, given[:, :M] - 2, code_sh[:, :M])
        grid = torch.where((grid == K) & (mem_code != NO_CODE), mem_code, grid)
        todo = grid == K
        if not bool(todo.any()):
            return given
        temperature = self.sampler.reveal_temperature

        def choose(logits: Tensor) -> Tensor:
            if allowed is not None:
                logits = logits.masked_fill(~allowed.to(logits.device), -1e4)
            return _choose(logits, temperature, generator, self.sampler.reveal_top_p)

        B, shape = len(grid), (len(grid), self.rows, self.cols)
        drawn = net.e_prior.draw(grid.view(shape), todo.view(shape), self.disp[shift], choose)
        given = given.clone()
        given[:, :M] = torch.where(todo, drawn.reshape(B, M) + 2, given[:, :M])
        return given

    @torch.no_grad()
    def next(
        self,
        state: TileRolloutState,
        actions: Tensor,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        generator: torch.Generator | None = None,
        method: str | None = None,
        given: list[Given | None] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The k frames that follow encoded actions [B, k, A]; updates `state`.

        Args:
            steps: commit rounds per frame (default: the sampler's `sampler_steps`).
            guidance: must be None or 1 (this model has no action guidance).
            given: per frame, what the step is told (a shift, committed tiles); None: nothing.

        Returns:
            frames x [B, k, C, H, W] in [-1, 1], rewards [B, k], termination probabilities [B, k].
        """
        if guidance is not None and float(guidance) != 1.0:
            raise WorldsimError(
                f"guidance {guidance}: a tile world model has no action guidance; use 1"
            )
        rounds = self.sampler.sampler_steps if steps is None else int(steps)
        if rounds < 1:
            raise WorldsimError(f"steps (commit rounds) must be at least 1, got {rounds}")
        xs, rewards, ends = [], [], []
        for i, a in enumerate(actions.unbind(1)):
            told = given[i] if given is not None else None
            frame, reward, end = self._step(state, a, rounds, generator, told)
            xs.append(frame)
            rewards.append(reward)
            ends.append(end)
        x = pixels_to_x(torch.stack(xs, 1))
        return x, torch.stack(rewards, 1), torch.stack(ends, 1)

    def _step(
        self,
        state: TileRolloutState,
        action: Tensor,
        rounds: int,
        generator: torch.Generator | None,
        told: Given | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        net, cfg, sp = self.net, self.config, self.sampler
        K = cfg.codebook_size
        told = told or Given()
        shift, events = told.shift, told.events
        if shift is None or events is None:
            s_logits, ev_logits = net.step_logits(state.code, state.pix, action)
            if shift is None:
                shift = _choose(s_logits, sp.shift_temperature, generator)
            if events is None:
                events = net.fire_events(ev_logits, sp.event_temperature, generator)
        state.canvas.move(self.disp[shift])
        mem_code, mem_age = state.canvas.read()
        pix_sh, code_sh, prev_sh = net.shift_inputs(
            state.pix, state.code, state.prev_code, state.prev_shift, shift
        )
        given = torch.zeros_like(state.code)
        if told.hide is not None:
            hide = told.hide.to(code_sh.device)
            code_sh = code_sh.masked_fill(hide, K)
            pix_sh = pix_sh.masked_fill(hide[..., None], 0)
            mem_code = mem_code.masked_fill(hide[:, : net.moving], -1)
            mem_age = mem_age.masked_fill(hide[:, : net.moving], 0)
        if told.mask is not None and told.patches is not None:
            want = told.patches.to(pix_sh.device)
            same = net.same_tile(pix_sh, want)
            code = nearest_codes(want, net.codebook)[0]
            target = torch.where(same & (code_sh != K), 1, code + 2)
            given = torch.where(told.mask.to(given.device), target, given)
        if sp.reveal == "edge":
            given = self._reveal_by_edge(given, code_sh, mem_code, shift, generator, told.allowed)
        # New ground (revealed, nothing remembered there) is drawn at the reveal temperature;
        # a tile the memory holds comes back into view as the tiles in view are drawn: sampled
        # from the tile net, remembered ground grew cows, players and lava on the way back.
        new_ground = code_sh == K
        new_ground[:, : net.moving] &= mem_code == NO_CODE
        temperature = torch.where(new_ground, sp.reveal_temperature, sp.temperature)
        temperature[:, net.moving :] = sp.fixed_temperature
        top_p = torch.where(new_ground, sp.reveal_top_p, 1.0)
        moves = None  # the move head's logits of the last round (none if every token was given)
        for r in range(rounds):
            if not bool((given == 0).any()):
                break  # every token was given
            keep, codes, moves = net.tile_logits(
                code_sh, pix_sh, prev_sh, mem_code, mem_age, given, action, shift, events,
                state.clock, state.event_clock,
            )  # fmt: skip
            if told.allowed is not None:
                codes = codes.masked_fill(~told.allowed.to(codes.device), -1e4)
            last = r == rounds - 1  # the last round commits every open token: no ranking
            open_ = given == 0  # only these draw: a given token's choice is never read
            choice, conf = _choose_tiles(
                keep, codes, temperature * open_, generator, not last, self.groups, code_sh, top_p
            )
            if last:
                commit = open_
            else:
                sure = open_ & (conf >= sp.commit_confidence)
                rest = open_ & ~sure
                n = math.ceil(rest.sum(1).max().item() / (rounds - r)) if rest.any() else 0
                ranked = conf.masked_fill(~rest, -1.0)
                top = torch.zeros_like(rest)
                if n:
                    idx = ranked.topk(n, dim=1).indices
                    top.scatter_(1, idx, True)
                commit = sure | (top & rest)
            given = torch.where(commit, choice + 1, given)
        keep = given == 1
        code_next = torch.where(keep, code_sh, given - 2)
        pix_next = torch.where(keep[..., None], pix_sh, net.codebook[code_next.clamp(0, K - 1)])
        if moves is not None and told.mask is None and told.hide is None:
            step = _choose(moves, sp.move_temperature, generator, sp.move_top_p)
            code_next, pix_next = self._move(step, code_sh, pix_sh, code_next, pix_next)
        frame = patches_to_frames(pix_next, state.frame, cfg.patch)
        new = novelty(code_next, state.seen)
        reward, end = net.predict_reward(state.code, code_next, new, action, events, state.paid)
        state.paid = state.paid | events
        M = net.moving
        state.clock = tick_clock(state.clock, code_next[:, M:] != state.code[:, M:])
        state.event_clock = tick_clock(state.event_clock, events.to(state.event_clock.device))
        state.canvas.write(code_next[:, : net.moving])
        state.prev_code, state.prev_shift = state.code, shift
        state.code, state.pix, state.frame = code_next, pix_next, frame
        return frame, reward, end
