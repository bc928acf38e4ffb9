"""Transitions of an episode store as tile tokens, for training a TileWorldNet.

`TileDataModule.setup` reads the episodes into memory once and computes, for every frame, its
patches and codes (the codebook is built from the training episodes), the view shift of every
transition (from the store's `view_pos` labels where it has them, else read off the pixels),
what the world memory holds for every frame (worldsim.model.tiles.Canvas, exactly as a rollout
keeps it) and which tiles show something new in the episode. Batches are drawn from these
arrays directly: a step's data costs microseconds.
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from training.data import StoreFacts
from worldsim.errors import StoreError, WorldsimError
from worldsim.model.tiles import (
    Canvas,
    anchor_tokens,
    build_codebook,
    displacements,
    event_clocks,
    first_events,
    frames_to_patches,
    hud_clocks,
    nearest_codes,
    patch_rms,
    paying_events,
    remember,
    renew_codebook,
    shift_from_offsets,
    shift_from_pixels,
    shift_table,
    shift_tokens,
)
from worldsim.spaces import tree_index

__all__ = ["TileDataModule"]

log = logging.getLogger(__name__)


class _Arrays:
    """Per-frame and per-transition arrays of a list of episodes."""

    def __init__(self) -> None:
        self.parts: dict[str, list[Any]] = {}

    def add(self, **arrays: Any) -> None:
        for k, v in arrays.items():
            self.parts.setdefault(k, []).append(v)

    def cat(self) -> dict[str, Any]:
        out = {}
        for k, v in self.parts.items():
            if isinstance(v[0], dict):
                out[k] = {key: np.concatenate([x[key] for x in v]) for key in v[0]}
            elif isinstance(v[0], torch.Tensor):
                out[k] = torch.cat(v)
            else:
                out[k] = np.concatenate(v)
        return out


class _Batches(IterableDataset):
    """`count` batches of `batch_size` transitions drawn with probabilities `weights`."""

    def __init__(self, module: TileDataModule, count: int, seed: int) -> None:
        self.module, self.count, self.seed, self.epoch = module, count, seed, 0

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        m = self.module
        draw = m.draw_weights()
        for _ in range(self.count):
            k = int(rng.integers(len(draw)))  # dream steps before the transition (unroll)
            p = draw[k]
            yield m.batch(m.train, rng.choice(len(p), m.batch_size, p=p), k)


class _Fixed(IterableDataset):
    def __init__(self, module: TileDataModule, index: np.ndarray) -> None:
        self.module, self.index = module, index

    def __len__(self) -> int:
        return -(-len(self.index) // self.module.batch_size)

    def __iter__(self):
        m = self.module
        for i in range(0, len(self.index), m.batch_size):
            yield m.batch(m.val, self.index[i : i + m.batch_size])


class TileDataModule(StoreFacts, L.LightningDataModule):
    """Transitions of an episode store as tile tokens (see the module docstring).

    Args:
        store: Episode store directory (record one with `worldsim collect`).
        patch: Patch size in pixels (must match model.overrides.patch).
        fixed_rows: Bottom token rows that never scroll (must match the model's).
        anchored: View tokens [row, col] that hold still while the view scrolls, an avatar
            the camera follows (Crafter's player: [[3, 4]]; TileConfig.anchored).
        motion_radius: View shifts of at most this many tokens (must match the model's).
        codebook_size / frequent_codes: The codebook (must match the model's).
        reward_classes: How many distinct reward values the reward head tells apart.
        batch_size: Transitions per batch.
        samples_per_epoch: Transitions drawn per training epoch.
        val_samples: Transitions in the fixed validation set.
        val_fraction / test_fraction: Shares of episodes held out (by key hash, as in
            `training.data.EpisodeDataModule`).
        event_weight: A transition with a non-zero reward, an episode end or one of the
            store's named events is drawn 1 + event_weight times as often (the model learns
            from rare events; its reward head undoes the oversampling at inference).
        event_balance: With named events, a transition with event e is drawn
            1 + event_weight * (n_max / n_e) ** event_balance times as often instead (n_e: the
            transitions with e, n_max: those with the most frequent event; the largest over
            the transition's events), so a rare event is learned too: 1 draws Crafter's 252
            tables about as often in all as its 4,298 drinks. 0: every event alike.
        cut_weight: A cut, a transition where most of the view changes at once beyond its
            shift (the median map token moves more than `cut_rms` in pixels: Crafter's player
            falling asleep or waking, which greys or colours the whole map), is drawn
            1 + cut_weight times as often: one transition in 300 of sleeper play, and the
            tile net must learn to change every token together.
        cut_rms: The RMS (0-255) that makes a cut (Crafter: sleep and wake 28 or more, every
            other transition 15 or less).
        cut_span: The transitions up to this many steps after a cut, in its episode, are drawn
            as often as the cut (Crafter: the 12-40 steps asleep that follow falling asleep,
            where the energy comes back; one frame in 30 of the data).
        balance_misses: A transition whose action causes one of the store's events
            elsewhere, but not here, is drawn at least as often, all such misses together,
            as the transitions where it does (Crafter's `sleep` pressed at full energy, which
            the game ignores: 215 presses against 460 falls): the shift net learns what
            decides the event (the energy the HUD shows), not only the action. Needs a
            discrete action space.
        seed: Seeds the codebook, the batches and the validation set.
        unroll: Self forcing: each training batch draws k in 0..unroll and, for k > 0, brings
            the `unroll_context` real frames and the k transitions before its own, so that
            the module dreams k steps from those frames (the real view shifts and events
            forced) and trains the step from the dream's frame and memory, where they still
            agree with the real ones (training.tile_module). 0: every batch teacher-forced.
        unroll_context: Real context frames a self-forced dream starts from.
        reverse: Play every episode backwards (frames and view positions reversed, each
            action kept on the transition it labels, rewards and ends dropped): a model that
            extends clips backward (`worldsim generate extend --backward`); `worldsim export`
            marks its release `reversed`.
        codebook_from: A tile release folder whose codebook and reward values are used
            instead of ones built from this store. Set it to the release a run fine-tunes
            (model.init_from) or to a loop's own release, whose store grows: the tokens must
            mean what they meant when the release was trained.
        codebook_renew: With `codebook_from`: swap up to this many of the release's codes
            that this store's play uses least for the tiles it shows that the codebook draws
            badly (more than 10 RMS away, seen at least 20 times; `renew_codebook`): play of a
            new kind (a furnace placed, a stone pickaxe in the inventory) gets tokens of its
            own. The model fine-tuned (model.init_from) keeps its weights; the swapped codes'
            rows learn their new tiles.
    """

    def __init__(
        self,
        store: str = "data/crafter",
        patch: int = 7,
        fixed_rows: int = 0,
        anchored: list[list[int]] | None = None,
        motion_radius: int = 1,
        codebook_size: int = 2048,
        frequent_codes: int = 1024,
        reward_classes: int = 16,
        batch_size: int = 32,
        samples_per_epoch: int = 64_000,
        val_samples: int = 512,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        event_weight: float = 4.0,
        event_balance: float = 0.0,
        cut_weight: float = 0.0,
        cut_rms: float = 20.0,
        cut_span: int = 0,
        balance_misses: bool = False,
        seed: int = 0,
        reverse: bool = False,
        codebook_from: str | None = None,
        codebook_renew: int = 0,
        unroll: int = 0,
        unroll_context: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        from training.module import ConfigError

        for name in ("patch", "codebook_size", "batch_size", "samples_per_epoch", "reward_classes"):
            if int(getattr(self.hparams, name)) < 1:
                raise ConfigError(
                    f"--data.{name} must be at least 1, got {getattr(self.hparams, name)}"
                )
        if min(event_weight, event_balance, cut_weight) < 0:
            raise ConfigError(
                "--data.event_weight, --data.event_balance and --data.cut_weight must be >= 0, "
                f"got {event_weight}, {event_balance} and {cut_weight}"
            )
        if cut_span < 0:
            raise ConfigError(f"--data.cut_span must be >= 0, got {cut_span}")
        if unroll < 0 or unroll_context < 1:
            raise ConfigError(
                f"--data.unroll must be >= 0 and --data.unroll_context >= 1, got {unroll} "
                f"and {unroll_context}"
            )
        self.path, self.batch_size = store, batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.codebook: np.ndarray | None = None
        self.event_names: list[str] = []
        self.event_reward = 0.0
        self.unpaid_events: list[str] = []
        self.train: dict[str, Any] | None = None
        self.val: dict[str, Any] | None = None

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        h = self.hparams
        H, W = self.observation_space.shape[:2]
        if H // h.patch < 1 or W // h.patch < 1:
            raise StoreError(f"patch {h.patch} is larger than the store's {H}x{W} frames")
        rows, cols = H // h.patch, W // h.patch
        if h.balance_misses and not isinstance(self.action_space, gym.spaces.Discrete):
            from training.module import ConfigError

            raise ConfigError(
                "--data.balance_misses needs a discrete action space (one integer per step); "
                f"{self.path}'s is {self.action_space}: leave it off"
            )
        try:
            self.anchored = anchor_tokens(h.anchored or [], rows - h.fixed_rows, cols)
        except ValueError as e:
            from training.module import ConfigError

            raise ConfigError(f"--data.{e}") from None
        self.source, self.valid = shift_table(
            rows, cols, h.fixed_rows, h.motion_radius, self.anchored
        )
        train_eps, val_eps = self.split("train"), self.split("val")
        if not train_eps:
            raise StoreError(
                f"{self.path} has no training episodes: record more with `worldsim collect`"
            )
        self.event_names, self.event_reward, self.unpaid_events = self._event_spec()
        self.event_pays = paying_events({"names": self.event_names, "unpaid": self.unpaid_events})
        train = [self._read(i) for i in train_eps]
        given = self._release_vocabulary() if h.codebook_from else None
        self.renewed = np.zeros(0, np.int64)  # codes whose tile this data swapped in
        if given is not None:
            self.codebook, keep = given
            if h.codebook_renew:
                self.codebook, self.renewed = renew_codebook(
                    self.codebook, self._patch_sample(train), h.codebook_renew
                )
                log.info("tile data: %d codes renewed for this store's tiles", len(self.renewed))
        else:
            sample = self._patch_sample(train, every=1)
            self.codebook = build_codebook(sample, h.codebook_size, h.frequent_codes, seed=h.seed)
            del sample
        self.train = self._tokenize(train)
        self.val = self._tokenize([self._read(i) for i in val_eps]) if val_eps else None
        if given is None:
            values, counts = np.unique(np.round(self.train["reward"], 3), return_counts=True)
            keep = np.sort(values[np.argsort(-counts, kind="stable")[: h.reward_classes]])
            if 0.0 not in keep:
                keep = np.sort(np.concatenate([keep[1:], [0.0]]))
        self.reward_values = keep.astype(np.float32)
        for part in (self.train, self.val):
            if part is not None:
                part["reward_class"] = np.abs(part["reward"][:, None] - keep[None]).argmin(1)
        events = self.train["events"]
        event = (self.train["reward"] != 0) | self.train["terminated"] | events.any(1)
        self.weights = (
            1.0 + h.event_weight * event * self._rarity(events) + h.cut_weight * self._after_cut()
        )
        if h.balance_misses:
            self.weights = np.maximum(self.weights, self._miss_weights())
        n, w = len(events), self.weights
        p_real = (events.sum(0) + 1) / (n + 2)
        p_drawn = ((w[:, None] * events).sum(0) + 1) / (w.sum() + 2)
        self.event_prior = np.log(p_real / (1 - p_real)) - np.log(p_drawn / (1 - p_drawn))
        # log(real share / training share) per reward class, and the same log-odds for the end.
        real = np.bincount(self.train["reward_class"], minlength=len(keep)) + 1.0
        drawn = (
            np.bincount(self.train["reward_class"], weights=self.weights, minlength=len(keep)) + 1.0
        )
        self.reward_prior = np.log(real / real.sum()) - np.log(drawn / drawn.sum())
        end = self.train["terminated"]
        p_real = (end.sum() + 1) / (len(end) + 2)
        p_drawn = (self.weights[end].sum() + 1) / (self.weights.sum() + 2)
        self.end_prior = float(np.log(p_real / (1 - p_real)) - np.log(p_drawn / (1 - p_drawn)))
        n_val = 0 if self.val is None else len(self.val["reward"])
        rng = np.random.default_rng(h.seed)
        self.val_index = np.sort(rng.choice(n_val, min(h.val_samples, n_val), replace=False))
        shifts = np.bincount(self.train["shift"], minlength=len(displacements(h.motion_radius)))
        log.info(
            "tile data: %d train transitions, %d val; shifts %s; cuts %d; reward values %s",
            len(self.train["reward"]),
            n_val,
            shifts.tolist(),
            int(self.train["cut"].sum()),
            self.reward_values.tolist(),
        )

    def _rarity(self, events: np.ndarray) -> np.ndarray:
        """float [n]: per training transition, (n_max / n_e) ** event_balance for the rarest
        named event e it has (n_e transitions have e); 1 for the others, and for all at 0."""
        n = events.sum(0)
        if not self.hparams.event_balance or not n.any():
            return np.ones(len(events))
        scale = (n.max() / np.maximum(n, 1)) ** self.hparams.event_balance  # [E]
        return np.maximum((events * scale).max(1), 1.0)

    def _after_cut(self) -> np.ndarray:
        """bool [n]: the training transitions that are cuts or follow one by at most
        `cut_span` steps in the same episode."""
        cut, pos = self.train["cut"], self.train["pos"]
        idx = np.arange(len(cut))
        last = np.maximum.accumulate(np.where(cut, idx, -1))  # the latest cut at or before
        return (last >= idx - pos) & (idx - last <= self.hparams.cut_span)

    def _miss_weights(self) -> np.ndarray:
        """float [n]: per training transition, the weight that draws the misses of each
        (action, event) pair it is a miss of (the action, not the event; the event happens
        with that action elsewhere) as often in all as its hits are drawn (`balance_misses`);
        0 for the others."""
        actions, events = self.train["action"], self.train["events"]  # Discrete: checked in setup
        out = np.zeros(len(actions))
        for a in np.unique(actions):
            at = actions == a
            for e in np.flatnonzero(events[at].any(0)):
                miss = at & ~events[:, e]
                if miss.any():
                    hits = self.weights[at & events[:, e]].sum()
                    out[miss] = np.maximum(out[miss], hits / miss.sum())
        return out

    def _event_spec(self) -> tuple[list[str], float, list[str]]:
        """The store's named events (label `events`: per-episode counters, a first increase
        pays `reward` but for those listed `unpaid`) as (names, reward, unpaid); ([], 0, [])
        for a store without them."""
        spec = self.store.label_spec.get("events")
        if not spec or "events" not in self.store.label_spec.get("arrays", []):
            return [], 0.0, []
        if self.hparams.reverse:  # a backward model has no rewards to pay
            return [], 0.0, []
        if spec.get("pays") != "first":
            raise StoreError(
                f"{self.path}: its events label pays {spec.get('pays')!r}; the tile model "
                "knows events whose first occurrence in an episode pays (pays: first)"
            )
        unpaid = list(spec.get("unpaid", []))
        if not set(unpaid) <= set(spec["names"]):
            raise StoreError(
                f"{self.path}: its events label lists unpaid events {unpaid} that are not among "
                f"its names {spec['names']}: record the store again with `worldsim collect`"
            )
        return list(spec["names"]), float(spec["reward"]), unpaid

    @staticmethod
    def _patch_sample(episodes: list[dict[str, Any]], every: int = 4) -> np.ndarray:
        """The patches of every `every`-th frame of the episodes, [N, D]."""
        parts = [e["patches"][::every] for e in episodes]
        return np.concatenate([p.reshape(-1, p.shape[-1]) for p in parts])

    def _release_vocabulary(self) -> tuple[np.ndarray, np.ndarray]:
        """(codebook, reward values) of the release `codebook_from`, checked against this
        data module's settings."""
        from training.module import ConfigError
        from worldsim.checkpoint import read_release_config

        h, folder = self.hparams, self.hparams.codebook_from
        try:
            cfg = read_release_config(folder)["model_config"]
        except WorldsimError as e:
            raise ConfigError(f"data.codebook_from {folder}: {e}") from None
        if cfg.get("kind") != "tiles":
            raise ConfigError(
                f"data.codebook_from {folder} is not a tile world model (kind "
                f"{cfg.get('kind', 'diffusion')!r}): point it to a tile release"
            )
        wrong = [
            f"{k} {cfg.get(k)} (data: {h[k]})"
            for k in ("patch", "fixed_rows", "motion_radius", "codebook_size", "reward_classes")
            if cfg.get(k) != h[k]
        ]
        if wrong:
            raise ConfigError(
                f"data.codebook_from {folder} has other token settings: {', '.join(wrong)}; "
                "set data's to the release's"
            )
        from worldsim.checkpoint import load_release

        net = load_release(folder, observation_space=self.observation_space)[0]
        return net.codebook.cpu().numpy(), np.unique(net.reward_values.cpu().numpy())

    def _read(self, index: int) -> dict[str, Any]:
        ep = self.store.episode(index)
        out = {
            "patches": frames_to_patches(np.asarray(ep.frames), self.hparams.patch).numpy(),
            "actions": ep.actions,
            "rewards": np.asarray(ep.rewards, dtype=np.float32),
            "terminated": np.asarray(ep.terminated, dtype=bool),
        }
        labels = ep.labels or {}
        if "view_pos" in labels:
            out["view_pos"] = np.asarray(labels["view_pos"])
        T, E = len(out["rewards"]), len(self.event_names)
        out["events"] = np.zeros((T, E), bool)
        if E:  # counters [T+1, E]: which count up in each step; the first ones are paid
            if "events" not in labels:
                raise StoreError(
                    f"{self.path}: episode {index} has no `events` label though the store "
                    "declares events: record it again with `worldsim collect`"
                )
            counts = np.asarray(labels["events"])
            out["events"] = counts[1:] > counts[:-1]
            first = first_events(counts)[:, self.event_pays].any(1)
            out["rewards"] = out["rewards"] - self.event_reward * first  # what else it pays
        if self.hparams.reverse:  # transition t of the reversed episode is T-1-t played back
            out["patches"] = out["patches"][::-1].copy()
            out["actions"] = tree_index(out["actions"], np.arange(T)[::-1])
            out["rewards"], out["terminated"] = np.zeros(T, np.float32), np.zeros(T, bool)
            if "view_pos" in out:
                out["view_pos"] = out["view_pos"][::-1].copy()
        return out

    def _tokenize(self, episodes: list[dict[str, Any]]) -> dict[str, Any]:
        """Concatenated frame arrays (patches, codes, memory, novelty) and transition arrays."""
        h = self.hparams
        book = torch.from_numpy(self.codebook)
        H, W = self.observation_space.shape[:2]
        rows, cols = H // h.patch - h.fixed_rows, W // h.patch
        disp = torch.tensor(displacements(h.motion_radius))
        acc = _Arrays()
        offset = 0
        for ep in episodes:
            patches = torch.from_numpy(ep["patches"])
            codes, errs = nearest_codes(patches, book)
            T = len(patches) - 1
            if "view_pos" in ep:
                shift = shift_from_offsets(ep["view_pos"], h.motion_radius)
            else:
                shift = shift_from_pixels(patches, self.source, self.valid)
            sh = torch.as_tensor(shift).long()
            shifted = shift_tokens(patches[:-1], sh, self.source, self.valid, 0)
            moved = torch.where(self.valid[sh], patch_rms(shifted, patches[1:]), torch.nan)
            cut = moved[:, : rows * cols].nanmedian(1).values > h.cut_rms
            seen = torch.zeros(1, codes.shape[1], len(book), dtype=torch.bool)
            mem_code, mem_age, new = remember(
                codes[None],
                torch.as_tensor(shift)[None],
                Canvas(1, rows, cols, anchored=self.anchored),
                seen,
                disp,
            )
            t_idx = np.arange(T)
            # A stored episode starts at its game's reset, where the HUD's timers start.
            acc.add(
                pix=patches,
                code=codes.to(torch.int16),
                err=errs.to(torch.float16),
                mem_code=mem_code[0].to(torch.int16),
                mem_age=mem_age[0].to(torch.int32),
                clock=hud_clocks(codes[None, :, rows * cols :], episode_start=True)[0].to(
                    torch.int32
                ),
                event_clock=event_clocks(torch.as_tensor(ep["events"])).to(torch.int32),
                new=new[0],
                last=offset + t_idx,
                pos=t_idx,
                prev=offset + np.maximum(t_idx - 1, 0),
                shift=shift,
                prev_shift=np.concatenate([[0], shift[:-1]]) if T else shift,
                action=ep["actions"],
                reward=ep["rewards"],
                terminated=ep["terminated"],
                events=ep["events"],
                cut=cut.numpy(),
            )
            offset += T + 1
        return acc.cat()

    # ------------------------------------------------------------------ batches
    def draw_weights(self) -> list[np.ndarray]:
        """Per dream length k in 0..unroll, the probabilities of drawing each training
        transition: the event weights, among the transitions with enough of their episode
        before them (unroll_context frames and k steps)."""
        h, out = self.hparams, []
        for k in range(h.unroll + 1):
            w = self.weights * (self.train["pos"] >= (h.unroll_context + k - 1 if k else 0))
            if not w.any():
                raise StoreError(
                    f"{self.path}: no training episode is longer than {h.unroll_context + k} "
                    "steps, as data.unroll and unroll_context need: lower them"
                )
            out.append(w / w.sum())
        return out

    def batch(self, part: dict[str, Any], idx: np.ndarray, dream: int = 0) -> dict[str, Any]:
        """The transitions `idx` of `part` as a batch of tensors (TileWorldNet.training_loss);
        with `dream` k > 0, also the unroll_context real frames and the k transitions before
        the dream's first step (past_*, see `unroll`)."""
        last = part["last"][idx]
        nxt = last + 1
        out = self._transitions(part, idx, last, nxt)
        if dream:
            c = self.hparams.unroll_context
            back = np.arange(-(c + dream - 1), 0)  # the c + k - 1 transitions before idx
            steps, frames = idx[:, None] + back, last[:, None] + back[None, :c]
            out.update(
                past_pix=part["pix"][torch.as_tensor(last - dream)],
                past_code=part["code"][torch.as_tensor(frames)].long(),
                past_shift=torch.as_tensor(part["shift"][steps]),
                past_action=tree_index(part["action"], steps),
                past_events=torch.as_tensor(part["events"][steps]),
                dream_steps=dream,
            )
        return out

    def _transitions(
        self, part: dict[str, Any], idx: np.ndarray, last: np.ndarray, nxt: np.ndarray
    ) -> dict[str, Any]:
        return {
            "pix": part["pix"][last],
            "code": part["code"][last].long(),
            "prev_code": part["code"][part["prev"][idx]].long(),
            "prev_shift": torch.as_tensor(part["prev_shift"][idx]),
            "shift": torch.as_tensor(part["shift"][idx]),
            "action": tree_index(part["action"], idx),
            "pix_next": part["pix"][nxt],
            "code_next": part["code"][nxt].long(),
            "code_err_next": part["err"][nxt].float(),
            "mem_code": part["mem_code"][nxt].long(),
            "mem_age": part["mem_age"][nxt].long(),
            "clock": part["clock"][last].long(),
            "event_clock": part["event_clock"][last].long(),
            "new_next": part["new"][nxt],
            "reward_class": torch.as_tensor(part["reward_class"][idx]),
            "terminated": torch.as_tensor(part["terminated"][idx]),
            "events": torch.as_tensor(part["events"][idx]),
        }

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(
            _Batches(self, max(1, h.samples_per_epoch // h.batch_size), h.seed), batch_size=None
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None or not len(self.val_index):
            return []
        return DataLoader(_Fixed(self, self.val_index), batch_size=None)
