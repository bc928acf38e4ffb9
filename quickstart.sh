#!/usr/bin/env bash
# worldsim quickstart: sets everything up on a fresh machine (Python 3.10+ is all it needs), then
#   bash quickstart.sh play   # the main job: play the bundled Crafter world model (pygame window)
#   bash quickstart.sh test   # the test suite
#   bash quickstart.sh demo   # record real Crafter play and inspect the dataset
# The virtual environment lives in .venv (override with WORLDSIM_VENV); set-up reruns only when
# pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${WORLDSIM_VENV:-.venv}"
# Minetest (worldsim/RealMinetest-v0) is a Debian package, not a pip one: installed here where
# we are root with apt-get; elsewhere its tests skip, saying what to install.
if ! command -v minetest >/dev/null && [ ! -x /usr/games/minetest ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Minetest and Xvfb (apt-get, about 9 MB)"
    { apt-get install -y -qq minetest xvfb >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq minetest xvfb >/dev/null 2>&1; }; } ||
      echo "could not install minetest + xvfb with apt-get: the Minetest tests will skip"
  else
    echo "Minetest not found: to play and test worldsim/RealMinetest-v0, install the minetest and xvfb packages (as root: apt-get install -y minetest xvfb)"
  fi
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
stamp="$VENV/.worldsim-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setting up $VENV (first run: a few minutes)"
  python -m pip install -q --upgrade pip
  # torch first, pinned, so nothing else pulls a newer build with its CUDA packages.
  # On a GPU machine, install the torch build you want before running this script.
  python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
export SDL_AUDIODRIVER="${SDL_AUDIODRIVER:-dummy}"
case "${1:-play}" in
  play)
    shift || true
    python play.py "$@"
    ;;
  demo)
    worldsim collect --game crafter --episodes 4 --policy sticky --workers 2 --out data/crafter-demo
    worldsim data info data/crafter-demo
    ;;
  test)
    shift || true
    python -m pytest -q "$@"
    ;;
  *)
    echo "usage: bash quickstart.sh [play|test|demo] [ARGS...]" >&2
    exit 2
    ;;
esac
