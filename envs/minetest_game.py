"""The Minetest processes behind envs.minetest_env: an Xvfb, the game client, the mod bridge, XTEST input.

`MinetestGame` owns a temporary folder (the world, made from a seeded template, the config, a
HOME for the game and the logs) and two processes, each in its own process group and killed with
its parent (PR_SET_PDEATHSIG), so neither outlives `stop()`, an error, Ctrl-C or a killed parent.
(PR_SET_PDEATHSIG follows the thread that started them: make the env in a thread that lives as
long as it, e.g. the main thread.)
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from envs.games import GameDependencyError
from worldsim.errors import WorldsimError

MOD_DIR = Path(__file__).with_name("minetest_mod")
BINARY_CANDIDATES = ("minetest", "/usr/games/minetest", "luanti")
INSTALL_HINT = (
    "needs the Minetest game and an X server: as root on Debian/Ubuntu "
    "`apt-get install -y minetest xvfb`, then `pip install 'worldsim[minetest]'` (mss, "
    "python-xlib); or pass binary=/path/to/minetest"
)
DEGREES_PER_PIXEL = 0.15  # camera degrees per mouse pixel: VPT's 360/2400 (CAMERA_SCALER)
REACH = 1216  # pixels of margin around the window, > 180 degrees of mouse motion in one step
# MineRL button -> X keysym; the mouse buttons below. Minetest's default key bindings.
KEYSYMS: dict[str, str] = {
    "forward": "w", "back": "s", "left": "a", "right": "d", "jump": "space",
    "sneak": "Shift_L", "drop": "q", **{f"hotbar.{i}": str(i) for i in range(1, 10)},
}  # fmt: skip
MOUSE_BUTTONS: dict[str, int] = {"attack": 1, "use": 3}


class MinetestError(WorldsimError, RuntimeError):
    """The game could not start, crashed, or stopped answering; the message has its log."""


def find_minetest(binary: str | None = None) -> str:
    """The minetest executable (PATH, /usr/games), or GameDependencyError saying how to install it."""
    missing = [name for name in ("mss", "Xlib") if not _importable(name)]
    for candidate in (binary,) if binary else BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found and shutil.which("Xvfb") and not missing:
            return found
    what = f"Python packages {missing}" if missing else "the minetest or Xvfb executable"
    raise GameDependencyError(f"Minetest: {what} not found; {INSTALL_HINT}")


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def sensitivity(size: tuple[int, int], fov: float = 72.0) -> float:
    """The ``mouse_sensitivity`` setting that turns the camera DEGREES_PER_PIXEL per pixel.

    Minetest scales mouse motion by tan(fov_y / 2) / tan(36 degrees), and widens fov_y on
    windows narrower than 16:10 (game.cpp, camera.cpp of 5.6).
    """
    aspect = size[1] / size[0]
    fov_y = math.radians(fov) * min(max(math.sqrt(1.6 / aspect), 1.0), 1.4)
    return DEGREES_PER_PIXEL / (math.tan(fov_y / 2) / math.tan(math.radians(36.0)))


@contextlib.contextmanager
def _start_turn() -> Iterator[None]:
    """Hold the machine-wide lock under which one game at a time starts."""
    path = Path(tempfile.gettempdir()) / "worldsim_minetest_start.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MinetestGame:
    """One Xvfb + Minetest client on a fresh copy of a seeded world.

    Args:
        binary: the minetest executable.
        size: (H, W) of the game window.
        world_seed: the map generator's seed.
        viewing_range: nodes drawn.
        fps_max: the game's frame cap.
    """

    def __init__(
        self, binary: str, size: tuple[int, int], world_seed: int, viewing_range: int, fps_max: int
    ) -> None:
        self.binary, self.size, self.world_seed = binary, size, world_seed
        self.viewing_range, self.fps_max = viewing_range, fps_max
        self.dir: Path | None = None
        self.procs: list[subprocess.Popen] = []
        self.spawn = (0.0, 0.0)
        self._seq = 0
        self._held: set[str] = set()
        self.x: Any = None  # the Xlib display (input), once connected
        self.grabber: Any = None  # mss (window grabs)

    # ------------------------------------------------------------------ lifetime
    def start(self, timeout: float = 60.0) -> None:
        """Make the world, start Xvfb and the game, wait for the player to join."""
        self.dir = Path(tempfile.mkdtemp(prefix="worldsim_minetest_"))
        try:
            self._write_world()
            display = self._start_xvfb()
            env = {
                **os.environ, "DISPLAY": display, "HOME": str(self.dir),
                "LIBGL_ALWAYS_SOFTWARE": "1", "LP_NUM_THREADS": "1", "SDL_AUDIODRIVER": "dummy",
            }  # fmt: skip
            args = [self.binary, "--go", "--world", str(self.dir / "world")]
            args += ["--gameid", "minetest_game", "--config", str(self.dir / "minetest.conf")]
            # A singleplayer game draws its server's UDP port from a generator seeded with the
            # time in seconds (and ignores --port): games started in the same second collide.
            # So starts take turns, each in a second of its own, across processes.
            with _start_turn():
                spawned = time.time()
                self.procs.append(self._spawn(args, env, "minetest.log"))
                self._connect(display, timeout)
                while int(time.time()) == int(spawned):
                    time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill both process groups and delete the folder (safe to call twice)."""
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for connection in (self.grabber, self.x):
            if connection is not None:
                with contextlib.suppress(Exception):  # the X server is gone already
                    connection.close()
        self.procs, self.x, self.grabber = [], None, None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _spawn(self, args: list[str], env: dict[str, str] | None, log: str, **kw: Any) -> Any:
        with open(self.dir / log, "wb") as out:
            return subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=_die_with_parent, **kw,
            )  # fmt: skip

    def _start_xvfb(self) -> str:
        read, write = os.pipe()
        H, W = self.size
        screen = f"{W + 2 * REACH}x{H + 2 * REACH}x24"
        args = ["Xvfb", "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp"]
        try:
            self.procs.append(self._spawn(args, None, "xvfb.log", pass_fds=(write,)))
        finally:
            os.close(write)
        with os.fdopen(read) as pipe:  # Xvfb writes the display number it chose when ready
            number = pipe.readline().strip()
        if not number:
            raise MinetestError(f"Xvfb did not start: {self._log('xvfb.log')}")
        return f":{number}"

    def _write_world(self) -> None:
        world = self.dir / "world"
        shutil.copytree(MOD_DIR, world / "worldmods" / "worldsim")
        (world / "world.mt").write_text(
            "gameid = minetest_game\nbackend = sqlite3\ncreative_mode = false\nenable_damage = false\n"
        )
        (world / "map_meta.txt").write_text(
            f"seed = {self.world_seed}\nmg_name = v7\n[end_of_params]\n"
        )
        H, W = self.size
        settings = {
            "screen_w": W, "screen_h": H, "fps_max": self.fps_max, "fps_max_unfocused": self.fps_max,
            "viewing_range": self.viewing_range, "mouse_sensitivity": f"{sensitivity(self.size):.9f}",
            "enable_sound": "false", "pause_on_lost_focus": "false", "enable_clouds": "false",
            "view_bobbing_amount": 0, "fall_bobbing_amount": 0, "show_debug": "false",
            "enable_minimap": "false", "time_speed": 0, "enable_damage": "false",
            "creative_mode": "false", "dedicated_server_step": 0.02, "enable_shaders": "false",
            "server_announce": "false", "camera_smoothing": 0, "fov": 72, "random_input": "false",
            "keymap_slot9": "KEY_KEY_9", "enable_weather": "false", "enable_3d_clouds": "false",
        }  # fmt: skip
        (self.dir / "minetest.conf").write_text(
            "".join(f"{k} = {v}\n" for k, v in settings.items())
        )

    def _connect(self, display: str, timeout: float) -> None:
        """Wait for the game window and the mod's first report; set up input."""
        import mss
        from Xlib import X
        from Xlib import display as xdisplay

        deadline = time.monotonic() + timeout
        self.x = xdisplay.Display(display)
        root = self.x.screen().root
        window = None
        while window is None or self._read_state() is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise MinetestError(f"Minetest did not start in {timeout:.0f} s: {self._log()}")
            time.sleep(0.05)
            if window is None:
                window = next((w for w in root.query_tree().children if w.get_wm_name()), None)
        window.configure(x=REACH, y=REACH)
        # Relative motion without pointer acceleration: one pixel is one pixel.
        self.x.change_pointer_control(accel=(1, 1), threshold=1)
        self.x.set_input_focus(window, X.RevertToParent, X.CurrentTime)
        self.x.sync()
        self.grabber = mss.MSS(display=display)
        self.box = {"left": REACH, "top": REACH, "width": self.size[1], "height": self.size[0]}
        x, _, z = self.state()["pose"][:3]
        self.spawn = (float(x), float(z))

    # ------------------------------------------------------------------ the mod
    def _read_state(self) -> dict[str, Any] | None:
        try:
            words = (self.dir / "world" / "worldsim_state.txt").read_text().split()
        except (OSError, TypeError):
            return None
        if len(words) != 11 or words[-1] != "end":
            return None  # not written yet (the mod renames a whole file into place)
        return {
            "done": int(words[0]), "result": words[1], "tick": int(words[2]),
            "pose": [float(w) for w in words[3:8]], "controls": [int(c) for c in words[8]],
            "wield_index": int(words[9]),
        }  # fmt: skip

    def fresh_state(self, timeout: float = 0.5) -> dict[str, Any]:
        """The mod's report of the next server step, so that it follows what was just seen."""
        first = self.state()
        deadline = time.monotonic() + timeout
        while (state := self.state())["tick"] <= first["tick"] and time.monotonic() < deadline:
            time.sleep(0.002)
        return state

    def state(self) -> dict[str, Any]:
        """The mod's latest report: done, result, tick, pose [5], controls [10], wield_index."""
        for _ in range(100):
            state = self._read_state()
            if state is not None:
                return state
            self._check_alive()
            time.sleep(0.002)
        raise MinetestError(f"the worldsim mod stopped reporting: {self._log()}")

    def command(self, verb: str, *numbers: float, timeout: float = 30.0) -> bool:
        """Send a command to the mod and wait until it is done; True if it succeeded."""
        self._seq += 1
        path = self.dir / "world" / "worldsim_cmd.txt"
        path.with_suffix(".tmp").write_text(f"{self._seq} {verb} {' '.join(map(str, numbers))}\n")
        os.replace(path.with_suffix(".tmp"), path)
        deadline = time.monotonic() + timeout
        while (state := self.state())["done"] < self._seq:
            self._check_alive()
            if time.monotonic() > deadline:
                raise MinetestError(
                    f"the mod did not finish {verb!r} in {timeout} s: {self._log()}"
                )
            time.sleep(0.005)
        return state["result"] == "ok"

    # ------------------------------------------------------------------ screen and input
    def grab(self) -> np.ndarray:
        """The game window now, uint8 [H, W, 3]."""
        self._check_alive()
        return np.asarray(self.grabber.grab(self.box))[..., 2::-1].copy()  # BGRA -> RGB

    def latest_frame(self, frames: int = 4) -> np.ndarray:
        """The window once two grabs a frame apart agree (at most `frames` more grabs)."""
        frame = self.grab()
        for _ in range(frames):
            time.sleep(1.0 / self.fps_max)
            new = self.grab()
            if np.array_equal(new, frame):
                break
            frame = new
        return frame

    def settle(self, timeout: float, interval: float = 0.05, still: int = 6) -> np.ndarray:
        """The first frame that stays the same for `still` grabs (or the last at `timeout`):
        after a teleport the client needs a moment to receive and draw the map around it."""
        time.sleep(0.15)
        frame, same, deadline = self.grab(), 0, time.monotonic() + timeout
        while same < still - 1 and time.monotonic() < deadline:
            time.sleep(interval)
            new = self.grab()
            same = same + 1 if np.array_equal(new, frame) else 0
            frame = new
        return frame

    def set_held(self, held: set[str], mouse: tuple[int, int] = (0, 0)) -> None:
        """Press and release buttons (MineRL names) so exactly `held` is down; move the mouse."""
        from Xlib import XK, X
        from Xlib.ext import xtest

        for name in sorted(self._held ^ held):
            down = name in held
            if name in MOUSE_BUTTONS:
                event = X.ButtonPress if down else X.ButtonRelease
                xtest.fake_input(self.x, event, MOUSE_BUTTONS[name])
            else:
                code = self.x.keysym_to_keycode(XK.string_to_keysym(KEYSYMS[name]))
                xtest.fake_input(self.x, X.KeyPress if down else X.KeyRelease, code)
        if mouse != (0, 0):
            xtest.fake_input(self.x, X.MotionNotify, True, x=mouse[0], y=mouse[1])
        self.x.sync()
        self._held = set(held)
        if mouse != (0, 0):
            self._wait_for_pointer()

    def _wait_for_pointer(self, timeout: float = 1.0) -> None:
        """Wait until the game has taken in the mouse motion: it puts the pointer back in the
        middle of its window every frame. A busy CPU can stall the game for a few frames, and
        a turn must not be lost to the next step."""
        root = self.x.screen().root
        centre = (REACH + self.size[1] // 2, REACH + self.size[0] // 2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pointer = root.query_pointer()
            if (pointer.root_x, pointer.root_y) == centre:
                return
            time.sleep(0.002)

    def tap(self, name: str) -> None:
        """Press and release one button."""
        self.set_held(self._held | {name})
        time.sleep(0.03)
        self.set_held(self._held - {name})

    # ------------------------------------------------------------------ failures
    def _check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                name = "Xvfb" if proc is self.procs[0] else "Minetest"
                log = "xvfb.log" if name == "Xvfb" else "minetest.log"
                raise MinetestError(
                    f"{name} exited with status {proc.returncode}: {self._log(log)}"
                )

    def _log(self, name: str = "minetest.log", lines: int = 15) -> str:
        try:
            text = (self.dir / name).read_text(errors="replace").splitlines()
        except (OSError, TypeError):
            return "(no log)"
        errors = [line for line in text if "ERROR" in line]
        return "\n".join((errors or text)[-lines:])
