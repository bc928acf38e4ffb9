"""Keyboard (and mouse) mappings from held keys to game actions, per game, for play.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.errors import WorldsimError
from worldsim.spaces import noop_action  # also exported here, for the keymaps' users

# A source of input events for play.py: called once per frame with the frame index.
EventSource = Callable[[int], Iterable[Any]]

__all__ = [
    "CONTROLS",
    "EventSource",
    "Keymap",
    "family",
    "game_action_names",
    "help_text",
    "keymap_for",
    "noop_action",
    "scripted_keys",
]

# Player controls, shared by every game: (pygame key names, control, description).
# Chosen to collide with no game binding below (Crafter uses r/t/f/p, Minecraft e/q).
CONTROLS: list[tuple[tuple[str, ...], str, str]] = [
    (("escape",), "quit", "quit"),
    (("backspace",), "reset", "reset the episode"),
    (("return",), "pause", "pause / resume"),
    ((".",), "step", "single step (while paused)"),
    (("=", "+", "[+]"), "steps_up", "more sampler steps"),
    (("-", "[-]"), "steps_down", "fewer sampler steps"),
    (("h", "f1"), "help", "show / hide this help"),
]

# Crafter: crafter's own GUI bindings (crafter/run_gui.py). Key name -> action name.
CRAFTER_KEYS: dict[str, str] = {
    "a": "move_left", "d": "move_right", "w": "move_up", "s": "move_down",
    "space": "do", "tab": "sleep",
    "r": "place_stone", "t": "place_table", "f": "place_furnace", "p": "place_plant",
    "1": "make_wood_pickaxe", "2": "make_stone_pickaxe", "3": "make_iron_pickaxe",
    "4": "make_wood_sword", "5": "make_stone_sword", "6": "make_iron_sword",
}  # fmt: skip

# ViZDoom: key -> component of the "+"-joined action names in envs/doom_env.py.
DOOM_KEYS: dict[str, str] = {
    "up": "forward", "w": "forward", "down": "backward", "s": "backward",
    "left": "turn_left", "right": "turn_right", "a": "strafe_left", "d": "strafe_right",
    "left ctrl": "attack", "space": "attack", "e": "use",
}  # fmt: skip

# Atari: key -> component of ALE's action meanings (UPLEFTFIRE = {UP, LEFT, FIRE}).
ATARI_KEYS: dict[str, str] = {
    "up": "UP", "w": "UP", "down": "DOWN", "s": "DOWN",
    "left": "LEFT", "a": "LEFT", "right": "RIGHT", "d": "RIGHT", "space": "FIRE",
}  # fmt: skip

# Minecraft (MineRL Dict space): key -> button; the mouse drives the camera.
MINECRAFT_KEYS: dict[str, str] = {
    "w": "forward", "s": "back", "a": "left", "d": "right", "space": "jump",
    "left shift": "sneak", "left ctrl": "sprint", "mouse1": "attack", "mouse3": "use",
    "mouse2": "pickItem", "q": "drop", "e": "inventory", "f": "swapHands",
    **{str(i): f"hotbar.{i}" for i in range(1, 10)},
}  # fmt: skip
MOUSE_DEGREES = 0.15  # camera degrees per pixel of mouse motion (VPT's 360/2400)

_ATARI_TOKENS = re.compile("UP|DOWN|LEFT|RIGHT|FIRE")


def family(game: str, action_space: gym.spaces.Space | None = None) -> str:
    """The keymap family of a game name: crafter, doom, atari, minecraft (MineRL and Minetest,
    one Dict action space) or generic."""
    if game == "crafter":
        return "crafter"
    if game.startswith("doom"):
        return "doom"
    if game in ("breakout", "pong") or game.startswith("atari:"):
        return "atari"
    if (
        game == "minetest"
        or game.startswith("minerl:")
        or (isinstance(action_space, gym.spaces.Dict) and "camera" in action_space.spaces)
    ):
        return "minecraft"
    return "generic"


def _components(fam: str, name: str) -> frozenset[str]:
    """The parts of an action name that keys press: "forward+turn_left" -> both."""
    if fam == "atari":
        return frozenset(_ATARI_TOKENS.findall(name.upper()))
    if name.lower() in ("noop", "none", ""):
        return frozenset()
    return frozenset(name.split("+")) if fam == "doom" else frozenset([name])


@dataclass
class Keymap:
    """Held keys (pygame key names, mouse buttons as "mouse1".."mouse3") -> an action.

    Discrete games: each bound key presses a component; the action whose components equal
    the pressed set is taken, else the one covering most of it (earliest on a tie), else
    no-op. Minecraft: pressed buttons plus the mouse's motion as camera degrees.

    Args:
        game: the game name (see `family`).
        action_space: the game's action space.
        action_names: names of the Discrete actions (the game's ``action_names``), or None.
    """

    game: str
    action_space: gym.spaces.Space
    action_names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.family = family(self.game, self.action_space)
        self.bindings: dict[str, str] = {
            "crafter": CRAFTER_KEYS,
            "doom": DOOM_KEYS,
            "atari": ATARI_KEYS,
            "minecraft": MINECRAFT_KEYS,
        }.get(self.family, {})
        self._parts: list[frozenset[str]] = []
        if isinstance(self.action_space, gym.spaces.Discrete):
            n = int(self.action_space.n)
            names = list(self.action_names) if self.action_names else None
            if not names or len(names) != n or self.family == "generic":
                # No names (or no known bindings): number keys pick the action index.
                self.family, names = "generic", [str(i) for i in range(n)]
                self.bindings = {str(i): str(i) for i in range(min(n, 10))}
                self._parts = [frozenset() if i == 0 else frozenset([str(i)]) for i in range(n)]
            else:
                self._parts = [_components(self.family, name) for name in names]
            self.names = names
            known = set().union(*self._parts)
            # Drop keys whose action this variant lacks (Doom's "move" set has no attack).
            self.bindings = {k: v for k, v in self.bindings.items() if v in known}
        elif self.family != "minecraft":
            self.bindings, self.names = {}, None

    def noop(self) -> Any:
        """The action taken when no key is held."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            return np.int64(self._best(frozenset()))
        return noop_action(self.action_space)

    def _best(self, pressed: frozenset[str]) -> int:
        best, score = None, (-1, 0)
        for i, parts in enumerate(self._parts):
            if parts <= pressed and (len(parts), parts == pressed) > score:
                best, score = i, (len(parts), parts == pressed)
        return int(self.action_space.start) + (best if best is not None else 0)

    def action(self, held: Iterable[str], mouse: tuple[float, float] = (0.0, 0.0)) -> Any:
        """The action for the held keys and the mouse motion (dx, dy) in pixels this frame."""
        pressed = frozenset(self.bindings[k] for k in held if k in self.bindings)
        if isinstance(self.action_space, gym.spaces.Discrete):
            return np.int64(self._best(pressed))
        if self.family == "minecraft":
            action = noop_action(self.action_space)
            for button in pressed:
                if button in action:
                    action[button] = np.ones_like(action[button])
            if "camera" in action:
                low, high = self.action_space["camera"].low, self.action_space["camera"].high
                # MineRL's camera is [pitch, yaw]: mouse dy turns up/down, dx left/right.
                camera = np.array([mouse[1], mouse[0]], np.float32) * MOUSE_DEGREES
                action["camera"] = np.clip(camera, low, high).astype(np.float32)
            return action
        return noop_action(self.action_space)

    def describe(self, action: Any) -> str:
        """A short name of an action for the on-screen header."""
        if isinstance(self.action_space, gym.spaces.Discrete) and self.names:
            return self.names[int(action) - int(self.action_space.start)]
        if isinstance(action, dict):
            on = [k for k, v in action.items() if k != "camera" and np.any(v)]
            cam = action.get("camera")
            if cam is not None and np.any(cam):
                on.append(f"camera({cam[0]:+.1f},{cam[1]:+.1f})")
            return "+".join(on) or "noop"
        return str(np.asarray(action).round(2).tolist())

    def keys_to_action(self) -> dict[tuple[int, ...], int]:
        """Discrete games: pygame key codes -> action, for ``gymnasium.utils.play.play``."""
        import pygame

        if not pygame.display.get_init():
            pygame.display.init()  # key_code() needs it (no window is opened)
        first: dict[str, str] = {}
        for key, part in self.bindings.items():
            first.setdefault(part, key)
        mapping: dict[tuple[int, ...], int] = {}
        for i, parts in enumerate(self._parts):
            if parts and all(p in first for p in parts):
                codes = tuple(sorted(pygame.key.key_code(first[p]) for p in parts))
                mapping.setdefault(codes, int(self.action_space.start) + i)
        return mapping

    def help_rows(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every binding, then the player controls."""
        by_target: dict[str, list[str]] = {}
        for key, target in self.bindings.items():
            by_target.setdefault(target, []).append(key)
        rows = [("/".join(keys), target) for target, keys in by_target.items()]
        if self.family == "minecraft":
            rows.append(("mouse", "camera"))
        if not rows:
            rows.append(("", f"no keymap for {self.action_space}: no-op every step"))
        return [*rows, ("", ""), *(("/".join(k), d) for k, _, d in CONTROLS)]


def keymap_for(
    game: str, action_space: gym.spaces.Space, action_names: Sequence[str] | None = None
) -> Keymap:
    """The keymap of a game (see `Keymap`)."""
    return Keymap(game, action_space, action_names)


def game_action_names(game: str) -> list[str] | None:
    """The real game's action names (for a checkpoint that does not record them), or None."""
    from envs.games import make_game

    try:
        env = make_game(game)
    except (ImportError, WorldsimError):  # no such game here, or its package missing: number keys
        return None
    try:
        return getattr(env.unwrapped, "action_names", None)
    finally:
        env.close()


def help_text() -> str:
    """Every game family's bindings and the player controls, for ``play.py --help``."""

    def table(keys: dict[str, str]) -> str:
        by_target: dict[str, list[str]] = {}
        for key, target in keys.items():
            by_target.setdefault(target, []).append(key)
        return ", ".join(f"{'/'.join(k)}={t}" for t, k in by_target.items())

    return "\n".join(
        [
            "keys:",
            f"  Crafter: {table(CRAFTER_KEYS)}",
            f"  Doom: {table(DOOM_KEYS)} (combinations where the action set has them)",
            f"  Atari: {table(ATARI_KEYS)} (combinations as in ALE's action set)",
            f"  Minecraft: {table(MINECRAFT_KEYS)}; the mouse drives the camera",
            "  other Discrete games: number keys 0-9 pick the action index",
            "  player: " + ", ".join(f"{'/'.join(k)}={d}" for k, _, d in CONTROLS),
        ]
    )


def scripted_keys(script: dict[int, list[str]]) -> EventSource:
    """Events from a script {frame: ["+w", "-w", "space", ...]}: +key down, -key up, key both.

    For tests and benchmarks (headless with ``SDL_VIDEODRIVER=dummy``).
    """
    import pygame

    def events(frame: int) -> list[Any]:
        out = []
        for item in script.get(frame, []):
            name = item[1:] if item[:1] in "+-" and len(item) > 1 else item
            key = pygame.key.key_code(name)
            if item[0] != "-" or len(item) == 1:
                out.append(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=""))
            if item[0] != "+" or len(item) == 1:
                out.append(pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode=""))
        return out

    return events
