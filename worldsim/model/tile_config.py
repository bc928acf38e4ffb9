"""The tile model's three configs: TileConfig (the architecture of a TileWorldNet,
worldsim/model/tile_net.py; saved with every checkpoint and release), TileLoss (training) and
TileSampler (rollouts; a release stores its defaults)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from worldsim.model.config import config_from_fields
from worldsim.model.tiles import anchor_tokens, displacements

__all__ = ["PART_NAMES", "TileConfig", "TileLoss", "TileSampler"]

# The parts of a TileWorldNet that a run can train (TileLoss.parts; their parameters'
# prefixes: tile_net.PARTS).
PART_NAMES = ("shift", "tile", "move", "reward", "edge", "clock")


@dataclass
class TileLoss:
    """How a TileWorldNet is trained: the training run's business, not saved with the weights
    (a release records it in its metadata)."""

    reward_weight: float = 1.0
    # The networks trained (shift, tile, move, reward); the others keep the weights the run
    # starts from (model.init_from) and their losses are not computed, e.g. [reward] retrains
    # the reward net alone on new labels and leaves the frames the model draws untouched, and
    # [move] trains the move head (TileConfig.object_moves) on the tile net's features alone,
    # [edge] the edge prior (TileConfig.edge_prior) alone, and [clock] the HUD and event
    # clocks (TileConfig.hud_clock, event_clock) alone. A head trained alone on the tile net
    # (move, clock) learns from a step with nothing committed, as a one-round rollout draws it.
    parts: tuple[str, ...] = PART_NAMES
    # Loss weight of tokens in view whose tile changes (a cow steps, the inventory counts):
    # rare next to the many kept tiles, and what the game's events show on screen.
    change_weight: float = 1.0
    # Up to this share (drawn per transition) of the tiles the previous step revealed is
    # replaced by other real tiles before the tile net reads the frame, the target staying the
    # real next tile. In a dream those tiles are the net's own inventions of one step ago: it
    # learns to redraw a bad one rather than build on it. 0: the frames as they are.
    context_noise: float = 0.0
    # MaskGIT: each transition gives (commits) a random share of its tiles, drawn uniformly
    # up to `given`, and the net learns the others. A one-round sampler commits nothing, so
    # at 0 the net learns exactly the step it draws: a change of every tile at once (Crafter's
    # falling asleep) must then come from what the step is told (its events), not from tiles
    # given around it.
    given: float = 1.0

    def __post_init__(self) -> None:
        self.parts = tuple(self.parts)
        unknown = sorted(set(self.parts) - set(PART_NAMES))
        if unknown or not self.parts:
            raise ValueError(
                f"parts {list(self.parts)}: name at least one of {', '.join(PART_NAMES)}"
            )
        if self.change_weight <= 0:
            raise ValueError(f"change_weight must be positive, got {self.change_weight}")
        if not 0 <= self.context_noise <= 1:
            raise ValueError(f"context_noise must be in [0, 1], got {self.context_noise}")
        if not 0 <= self.given <= 1:
            raise ValueError(f"given must be in [0, 1], got {self.given}")
        if self.reward_weight < 0:
            raise ValueError(f"reward_weight must be >= 0, got {self.reward_weight}")


@dataclass
class TileSampler:
    """How a TileWorldNet's rollouts sample. A release stores its defaults; rollouts take them
    as an argument."""

    sampler: str = "rounds"
    sampler_steps: int = 2  # commit rounds per frame
    guidance: float = 1.0  # no classifier-free guidance in this model: must stay 1
    temperature: float = 0.0  # sampling temperature of tiles that were in view (0: the likeliest)
    # Of tiles that come into view where the memory holds nothing: new terrain. A tile the
    # memory holds comes back at `temperature`, as the tiles in view.
    reveal_temperature: float = 0.0
    # Nucleus of the draws of new terrain (reveal_temperature > 0), by the edge prior or the
    # tile net: each is drawn from the likeliest codes that hold this share of its
    # probability, so that codes given a sliver each (an inventory tile, a second player,
    # lava on grassland) are never drawn on the map over thousands of draws. 1: every code.
    reveal_top_p: float = 1.0
    # Who draws a tile that comes into view where the memory holds nothing: "net" (the tile
    # net, each token alone) or "edge" (the edge prior, TileConfig.edge_prior: one token at a
    # time along the new edge, each from its neighbours, so new ground comes in patches).
    reveal: str = "net"
    # Of the fixed rows (a HUD: Crafter's inventory and health). 1 draws a change as often as
    # the model expects one; 0 only when it is the likeliest outcome, so rare events vanish.
    fixed_temperature: float = 0.0
    shift_temperature: float = 1.0
    # Of the named events (TileConfig.events): 0 takes the likelier outcome of each, 1 draws
    # it as often as the model expects (Crafter's sapling: a tenth of the tries on grass).
    event_temperature: float = 0.0
    commit_confidence: float = 0.9  # a round commits every token at least this sure
    # Of the move head (TileConfig.object_moves): 1 moves each tile as often as the model
    # expects (Crafter's cows step on about a third of the steps); 0 moves a tile only where
    # the head finds a step likelier than staying.
    move_temperature: float = 1.0
    # Nucleus of the move head's draws (move_temperature > 0): each tile steps only to the
    # likeliest choices that hold this share of its probability, so a tile the head gives a
    # sliver of a step each (the player, water) stays put over thousands of steps while a
    # cow still wanders. 1: from every choice.
    move_top_p: float = 1.0
    # A token choosing at temperature 0 takes the likeliest tile rather than the likeliest
    # code: codes within this RMS (0-255) of each other count as one tile, their probability
    # summed (keep counts with the shifted tile's). A codebook holds near twins (an exact
    # patch and a k-means centroid a pixel from it) that split a tile's probability, so that
    # by code a tile drawn by one code can beat ground spread over three. 0: by code.
    twin_rms: float = 0.0

    def __post_init__(self) -> None:
        if self.sampler != "rounds":
            raise ValueError(f"sampler {self.sampler!r}: a tile model samples in 'rounds'")
        if self.reveal not in ("net", "edge"):
            raise ValueError(f"reveal {self.reveal!r}: 'net' or 'edge'")
        if self.sampler_steps < 1:
            raise ValueError(
                f"sampler_steps (commit rounds) must be >= 1, got {self.sampler_steps}"
            )
        if self.guidance != 1.0:
            raise ValueError("tile models have no action guidance: guidance must be 1")
        temps = (self.temperature, self.reveal_temperature, self.fixed_temperature,
                 self.shift_temperature, self.event_temperature, self.move_temperature)  # fmt: skip
        if min(temps) < 0:
            raise ValueError(
                "temperature, reveal_temperature, fixed_temperature, shift_temperature, "
                "event_temperature and move_temperature must be >= 0 (0: the likeliest)"
            )
        for name in ("reveal_top_p", "move_top_p"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(
                    f"{name} must be in (0, 1] (1: draw from every choice), "
                    f"got {getattr(self, name)}"
                )
        if self.twin_rms < 0:
            raise ValueError(f"twin_rms must be >= 0 (0: the likeliest code), got {self.twin_rms}")


@dataclass
class TileConfig:
    """A TileWorldNet's architecture: everything needed to rebuild it; saved with every
    checkpoint and release. How it is trained is `TileLoss`, how it samples `TileSampler`."""

    LOSS: ClassVar[type] = TileLoss
    SAMPLER: ClassVar[type] = TileSampler

    kind: str = "tiles"  # tells a release's config apart from the diffusion ModelConfig
    # Frames.
    height: int = 64
    width: int = 64
    channels: int = 3
    # Tokens: one per patch x patch block of the top-left grid; pixels outside it are copied.
    patch: int = 7
    fixed_rows: int = 0  # bottom token rows that never scroll (a HUD; Crafter's inventory: 2)
    motion_radius: int = 1  # view displacements of at most this many tokens (1: 4 directions)
    # View tokens [row, col] that hold still while the view scrolls: the avatar of a game
    # whose camera follows it (Crafter's player, [3, 4]). Not part of the world: not scrolled
    # with it, not remembered, never moved by the move head; the tile under one comes into
    # view when the view moves off it. Without, the avatar scrolls away with the world each
    # step and has to be drawn back, and a dream that misses once shows two or none.
    anchored: list[list[int]] = field(default_factory=list)
    codebook_size: int = 2048
    frequent_codes: int = 1024  # exact most-frequent patches; the rest are k-means centroids
    memory_buckets: int = 8  # memory ages, log2-bucketed
    reward_classes: int = 16  # the most frequent reward values of the training data
    # Named per-episode events (the store's `events` label, e.g. Crafter's achievements): the
    # shift net tells which of them the action causes, the tile net draws them, and a step
    # where one happens for the first time in the rollout pays `event_reward` on top of the
    # reward class. The rollout remembers what it has paid: a repeat (a second drink) pays 0.
    # `unpaid_events` are told and drawn but never pay (Crafter's falling asleep, which greys
    # the whole view at once: one choice for the frame, not one per token).
    events: list[str] = field(default_factory=list)
    event_reward: float = 0.0
    unpaid_events: list[str] = field(default_factory=list)
    # A patch within this RMS (0-255 units) of another counts as the same tile: what the loss
    # counts as right, and what a rollout told a patch keeps as unchanged.
    match_rms: float = 3.0
    # A move head: each token in view may move its tile to a neighbour in one choice (a cow
    # stepping: it swaps places with the grass it steps onto), so a move is one decision and
    # not two tokens that each have to change.
    object_moves: bool = False
    # An edge prior (worldsim/model/tile_edge.py): a small net that draws the tiles coming
    # into view one at a time from their neighbours (TileSampler.reveal "edge").
    edge_prior: bool = False
    # A clock on every fixed-row token (a HUD): how many steps ago its code last changed, as
    # 1..hud_clock-1 (capped), or 0 while no change has been seen, read by the tile net through
    # an embedding of each (token, clock) pair. A HUD's counters that tick on hidden timers
    # (Crafter's food, water and energy fall every 26, 21 and 31 steps) can then tick on
    # time, where two frames cannot tell when. 0: no clock.
    hud_clock: int = 0
    # A clock on every named event: how many steps ago it last happened in the rollout, as
    # 1..event_clock-1 (capped), or 0 while it has not, with a say on each HUD token's change
    # learned per (event, clock, token). Some HUD counters keep a beat that starts at an event
    # (Crafter's energy comes back 11 steps after falling asleep, then every 11), which no
    # HUD clock can time from the event. 0: no event clocks.
    event_clock: int = 0
    # The tiles beside an anchored token (the avatar) are told, each by its own learned
    # embedding, the step's named events and the anchored tile's pixels: what the avatar does
    # it does beside it, on the side it faces (Crafter's table goes on the tile the player
    # faces, which its sprite shows), and each of those tiles then knows it directly.
    near_anchor: bool = False
    # Networks.
    dim: int = 128
    depth: int = 4
    heads: int = 4
    shift_dim: int = 96
    shift_depth: int = 2
    reward_dim: int = 96
    reward_depth: int = 2
    context: int = 8  # context frames a rollout keeps (the memory keeps everything seen)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def grid(self) -> tuple[int, int]:
        return self.height // self.patch, self.width // self.patch

    @property
    def tokens_per_frame(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def anchored_tokens(self) -> list[int]:
        """The anchored tokens' indices in a frame's token order (row-major)."""
        rows, cols = self.grid
        return anchor_tokens(self.anchored, rows - self.fixed_rows, cols)

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch * self.channels

    @property
    def num_shifts(self) -> int:
        return len(displacements(self.motion_radius))

    def validate(self) -> None:
        """Raise ValueError naming the inconsistent field."""
        rows, cols = self.grid
        if self.patch < 1 or rows < 1 or cols < 1:
            raise ValueError(
                f"patch {self.patch} does not fit {self.height}x{self.width} frames: pick a patch "
                "size of at most the frame's smaller side"
            )
        if not 0 <= self.fixed_rows < rows:
            raise ValueError(f"fixed_rows must be in [0, {rows}), got {self.fixed_rows}")
        if self.motion_radius < 0:
            raise ValueError(f"motion_radius must be >= 0, got {self.motion_radius}")
        anchor_tokens(self.anchored, rows - self.fixed_rows, cols)
        for name in ("dim", "shift_dim", "reward_dim"):
            if getattr(self, name) % self.heads:
                raise ValueError(
                    f"{name} {getattr(self, name)} must divide into {self.heads} heads"
                )
        if len(set(self.events)) != len(self.events):
            raise ValueError(f"events must be distinct names, got {self.events}")
        if not set(self.unpaid_events) <= set(self.events):
            raise ValueError(
                f"unpaid_events {self.unpaid_events} must be among the events {self.events}"
            )
        if self.hud_clock < 0 or (self.hud_clock and not self.fixed_rows):
            raise ValueError(
                f"hud_clock {self.hud_clock}: a clock needs fixed_rows (a HUD) and a value >= 0"
            )
        if self.event_clock < 0 or (self.event_clock and not self.fixed_rows):
            raise ValueError(
                f"event_clock {self.event_clock}: an event clock needs fixed_rows (a HUD whose "
                "changes it times) and a value >= 0"
            )
        if self.near_anchor and not self.anchored:
            raise ValueError(
                "near_anchor tells the tiles beside the anchored ones what the avatar does: it "
                "needs anchored tokens"
            )
        if self.codebook_size < 2 or self.context < 1:
            raise ValueError("codebook_size must be >= 2 and context >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileConfig:
        """Rebuild from `to_dict` output; unknown keys raise ValueError."""
        return config_from_fields(cls, data)
