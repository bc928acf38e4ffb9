"""Play a world model (or the real game) in a pygame window: `python play.py --help`.

The application's player: the game loop and drawing are here, the command line in
`worldsim.cli.play_args`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from envs.keymaps import (
    CONTROLS,
    EventSource,
    game_action_names,
    keymap_for,
    scripted_keys,
)
from worldsim.cli.play_args import PlayError, build_parser, load_image
from worldsim.errors import WorldsimError
from worldsim.spaces import noop_action

HEADER = 44  # pixels of text above the game panes
MAX_SAMPLER_STEPS = 32


__all__ = ["PlayError", "PlayResult", "Player", "main", "play", "run", "scripted_keys"]


@dataclass
class Pane:
    """One game shown on screen: the real game or the dream."""

    label: str
    env: Any
    frame: np.ndarray | None = None
    reward: float = 0.0
    ret: float = 0.0
    done: bool = False


@dataclass
class PlayResult:
    """What a session did: steps taken, frames recorded, wall time, returns per pane."""

    steps: int = 0
    frames_recorded: int = 0
    seconds: float = 0.0
    returns: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


class Recorder:
    """Writes RGB frames [H, W, 3] to an mp4 with PyAV (H.264, sizes padded to even)."""

    def __init__(self, path: Path, fps: float) -> None:
        import av

        self.path, self.fps, self.frames = path, fps, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), mode="w")
        self.stream: Any = None

    def write(self, frame: np.ndarray) -> None:
        import av

        H, W = frame.shape[:2]
        frame = np.pad(frame, ((0, H % 2), (0, W % 2), (0, 0)))
        if self.stream is None:
            from fractions import Fraction

            self.stream = self.container.add_stream(
                "libx264", rate=Fraction(self.fps).limit_denominator(1000)
            )
            self.stream.width, self.stream.height = frame.shape[1], frame.shape[0]
            self.stream.pix_fmt = "yuv420p"
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()


class Player:
    """The game loop: keys -> action -> every pane steps; draws header, panes and help."""

    def __init__(self, args: argparse.Namespace) -> None:
        if args.start_image is not None and (args.real or args.side_by_side):
            raise PlayError(
                "--start-image starts a dream from a picture; it cannot set the real game "
                "(drop --real / --side-by-side)"
            )
        if args.steps < 0 or (args.fps is not None and args.fps < 0):
            raise PlayError("--steps and --fps must be 0 or more")
        self.args, self.panes = args, []
        from envs.games import make_game

        dream = real = None
        if not args.real:
            dream = self._dream(args)
        game = args.game or (dream.game if dream is not None else None) or "crafter"
        if args.real or args.side_by_side:
            real = make_game(game)
            if dream is not None and real.observation_space.shape != dream.observation_space.shape:
                raise PlayError(
                    f"the real {game} frames are {real.observation_space.shape} but the model's are "
                    f"{dream.observation_space.shape}: --side-by-side needs the same size"
                )
            self.panes.append(Pane("real", real))
        if dream is not None:
            self.panes.append(Pane("dream", dream))
        self.game, self.dream, self.real = game, dream, real
        env = (dream or real).unwrapped
        names = getattr(env, "action_names", None) or getattr(
            getattr(real, "unwrapped", None), "action_names", None
        )
        if names is None and dream is not None:
            names = game_action_names(game)
        self.keymap = keymap_for(game, env.action_space, names)
        self.agent = None
        if args.agent is not None:
            from worldsim.agents import load_agent_policy

            self.agent = load_agent_policy(args.agent, env.action_space)
        fps = args.fps if args.fps is not None else float(env.metadata.get("render_fps") or 10)
        self.fps = fps
        H, W = env.observation_space.shape[:2]
        self.scale = args.scale or max(1, 512 // H)
        self.image = load_image(args.start_image, (H, W)) if args.start_image else None
        if getattr(args, "strength", None) is not None:
            if self.image is None:
                raise PlayError("--strength animates the --start-image: pass both")
            import torch

            g = torch.Generator().manual_seed(args.seed or 0)
            wm = self.dream.unwrapped.world_model
            self.image = wm.animate(self.image, args.strength, generator=g).frames[0]
        self.seed = args.seed
        self.held: set[str] = set()
        self.mouse = [0.0, 0.0]
        self.paused = self.show_help = False
        self.result = PlayResult()
        self.action_name, self.message = "noop", ""

    @staticmethod
    def _dream(args: argparse.Namespace) -> Any:
        import torch

        from envs.world_model_env import WorldModelEnv
        from envs.world_model_registry import bundled_checkpoint

        if args.threads:
            torch.set_num_threads(args.threads)

        checkpoint = args.checkpoint or bundled_checkpoint(args.game or "crafter")
        return WorldModelEnv(
            checkpoint, game=args.game, device=args.device, sampler_steps=args.sampler_steps
        )

    # ------------------------------------------------------------------ game
    def reset(self) -> None:
        seed, self.seed = self.seed, None  # only the first reset is seeded
        if self.real is not None:
            frame, _ = self.real.reset(seed=seed)
            frames = [frame]
            if self.dream is not None:
                # The dream starts from the real game's first K frames (no-op actions).
                noop = noop_action(self.real.action_space)
                for _ in range(self.dream.starts.length - 1):
                    frame, *_ = self.real.step(noop)
                    frames.append(frame)
                self.panes[-1].frame, _ = self.dream.reset(
                    seed=seed, options={"frames": np.stack(frames), "episode_start": True}
                )
            self.panes[0].frame = frames[-1]
        else:
            options = {"image": self.image} if self.image is not None else None
            self.panes[-1].frame, _ = self.dream.reset(seed=seed, options=options)
        for pane in self.panes:
            pane.reward = pane.ret = 0.0
            pane.done = False
        if self.agent is not None:
            self.agent.reset(0 if seed is None else seed)

    def step(self) -> None:
        if self.agent is not None:  # it sees the pane it plays: the dream, or the real game
            action = self.agent(self.panes[-1].frame)
        else:
            action = self.keymap.action(self.held, tuple(self.mouse))
        self.action_name = self.keymap.describe(action)
        self.mouse = [0.0, 0.0]
        for pane in self.panes:
            pane.frame, reward, terminated, truncated, _ = pane.env.step(action)
            pane.reward, pane.ret = float(reward), pane.ret + float(reward)
            pane.done = bool(terminated or truncated)
        self.result.steps += 1

    def set_sampler_steps(self, delta: int) -> None:
        if self.dream is not None:
            env = self.dream.unwrapped
            env.sampler_steps = int(np.clip(env.sampler_steps + delta, 1, MAX_SAMPLER_STEPS))

    # ------------------------------------------------------------------ input
    def handle(self, events: Iterable[Any]) -> list[str]:
        """Apply input events; returns the controls triggered this frame, in order."""
        import pygame

        controls: list[str] = []
        by_key = {key: control for keys, control, _ in CONTROLS for key in keys}
        for ev in events:
            if ev.type == pygame.QUIT:
                controls.append("quit")
            elif ev.type == pygame.KEYDOWN:
                name = pygame.key.name(ev.key)
                if name in by_key and name not in self.keymap.bindings:
                    controls.append(by_key[name])
                else:
                    self.held.add(name)
            elif ev.type == pygame.KEYUP:
                self.held.discard(pygame.key.name(ev.key))
            elif ev.type == pygame.MOUSEBUTTONDOWN:
                self.held.add(f"mouse{ev.button}")
            elif ev.type == pygame.MOUSEBUTTONUP:
                self.held.discard(f"mouse{ev.button}")
            elif ev.type == pygame.MOUSEMOTION:
                self.mouse[0] += ev.rel[0]
                self.mouse[1] += ev.rel[1]
        return controls

    # ------------------------------------------------------------------ drawing
    def header(self, fps: float) -> list[str]:
        mode = "+".join(p.label for p in self.panes)
        rewards = "  ".join(
            f"{p.label}: reward {p.reward:+.2f} return {p.ret:.2f}" for p in self.panes
        )
        sampler = (
            f"sampler {self.dream.unwrapped.sampler_steps} steps" if self.dream else "real game"
        )
        if self.agent is not None:
            sampler += f"  agent {self.agent.name}"
        state = " [paused]" if self.paused else ""
        return [
            f"{self.game} ({mode})  step {self.result.steps}  {fps:.1f} fps  {sampler}{state}",
            f"{rewards}  action {self.action_name}  {self.message}  (h: help)",
        ]

    def draw(self, screen: Any, font: Any, fps: float) -> None:
        import pygame

        screen.fill((20, 20, 24))
        for i, line in enumerate(self.header(fps)):
            screen.blit(font.render(line, True, (230, 230, 230)), (6, 4 + 20 * i))
        H, W = self.panes[0].frame.shape[:2]
        size = (W * self.scale, H * self.scale)
        for i, pane in enumerate(self.panes):
            surface = pygame.surfarray.make_surface(np.ascontiguousarray(pane.frame).swapaxes(0, 1))
            screen.blit(pygame.transform.scale(surface, size), (i * (size[0] + 4), HEADER))
        if self.show_help:
            overlay = pygame.Surface(screen.get_size(), pygame.SRCALPHA)
            overlay.fill((0, 0, 0, 200))
            screen.blit(overlay, (0, 0))
            rows = self.keymap.help_rows()
            line = min(20, (screen.get_height() - 8) // max(len(rows), 1))
            for i, (keys, what) in enumerate(rows):
                text = font.render(keys, True, (255, 220, 120))
                screen.blit(text, (150 - text.get_width(), 4 + line * i))
                screen.blit(font.render(what, True, (240, 240, 240)), (162, 4 + line * i))

    def window_size(self) -> tuple[int, int]:
        H, W = (self.dream or self.real).observation_space.shape[:2]
        n = len(self.panes)
        return max(n * W * self.scale + 4 * (n - 1), 480), H * self.scale + HEADER

    # ------------------------------------------------------------------ loop
    def run(self, events: EventSource | None = None) -> PlayResult:
        import pygame

        pygame.display.init()
        pygame.font.init()
        recorder = None
        try:
            pygame.display.set_caption(f"worldsim: {self.game}")
            screen = pygame.display.set_mode(self.window_size())
            if self.keymap.family == "minecraft":
                pygame.event.set_grab(True)
                pygame.mouse.set_visible(False)
            font = pygame.font.Font(None, 20)
            clock = pygame.time.Clock()
            recorder = Recorder(self.args.record, self.fps or 10) if self.args.record else None
            self.reset()
            fresh, frame, shown_fps, start = True, 0, 0.0, time.perf_counter()
            last = start
            while True:
                controls = self.handle([*pygame.event.get(), *(events(frame) if events else [])])
                if "quit" in controls:
                    break
                for control in controls:
                    if control == "help":
                        self.show_help = not self.show_help
                    elif control == "pause":
                        self.paused = not self.paused
                    elif control in ("steps_up", "steps_down"):
                        self.set_sampler_steps(1 if control == "steps_up" else -1)
                changed = False
                if "reset" in controls or any(p.done for p in self.panes):
                    self.message = "episode ended: reset" if any(p.done for p in self.panes) else ""
                    self.reset()
                    changed, fresh = True, False
                elif fresh:
                    fresh, changed = False, True  # show the first frame once before stepping
                elif not self.paused or "step" in controls:
                    self.step()
                    changed = True
                now = time.perf_counter()
                shown_fps = 0.9 * shown_fps + 0.1 / max(now - last, 1e-6) if frame else 0.0
                last = now
                self.draw(screen, font, shown_fps)
                if recorder is not None and changed:
                    recorder.write(pygame.surfarray.array3d(screen).swapaxes(0, 1))
                pygame.display.flip()
                frame += 1
                if self.args.steps and self.result.steps >= self.args.steps:
                    break
                clock.tick(30 if self.paused else self.fps)  # tick(0): no limit
            self.result.seconds = time.perf_counter() - start
            self.result.returns = {p.label: p.ret for p in self.panes}
            self.result.frames_recorded = recorder.frames if recorder is not None else 0
            return self.result
        finally:
            if recorder is not None:
                recorder.close()  # a playable mp4 even after an error
            for pane in self.panes:
                pane.env.close()
            pygame.display.quit()


def play(args: argparse.Namespace, events: EventSource | None = None) -> PlayResult:
    """Play with parsed arguments; raises WorldsimError for bad input."""
    return Player(args).run(events)


def run(args: argparse.Namespace, events: EventSource | None = None) -> int:
    """Play, printing bad-input errors as one line (exit status 2) instead of a traceback."""
    try:
        result = play(args, events)
    except WorldsimError as e:
        print(f"play.py: error: {e}", file=sys.stderr)
        return 2
    print(f"{result.steps} steps in {result.seconds:.1f} s ({result.fps:.1f} steps/s)")
    if args.record:
        print(f"recorded {result.frames_recorded} frames to {args.record}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
