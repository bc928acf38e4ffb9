"""The layers hold: application > training > envs > core, checked by import-linter's contracts.

The contracts live in pyproject.toml (`[tool.importlinter]`); `lint-imports` runs them. The
wrong-import tests run them on a copy of the packages with one bad import added, so a contract
that stopped catching anything fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("worldsim", "envs", "training")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under `root`, with the project's contracts."""
    # Not a skip: the layers are checked wherever the suite runs (a dev dependency).
    assert LINT_IMPORTS.exists(), "import-linter is not installed: pip install -e '.[dev]'"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three packages' Python files and pyproject.toml, copied (no assets, no caches)."""
    root = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        for file in (ROOT / package).rglob("*.py"):
            target = root / file.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
    shutil.copyfile(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken." in result.stdout, result.stdout


# (file of the copy, code appended to it, what lint-imports must report)
WRONG = {
    "core imports training inside a function": (
        "worldsim/errors.py",
        "def _wrong():\n    from training import cli  # noqa\n",
        "worldsim.errors -> training.cli",
    ),
    "core imports envs": (
        "worldsim/bench/metrics.py",
        "import envs.games  # noqa\n",
        "worldsim.bench.metrics -> envs.games",
    ),
    "envs imports training": (
        "envs/policies.py",
        "def _wrong():\n    import training.rl_eval  # noqa\n",
        "envs.policies -> training.rl_eval",
    ),
    "core imports the command line": (
        "worldsim/checkpoint.py",
        "def _wrong():\n    from worldsim.cli import main  # noqa\n",
        "worldsim.checkpoint -> worldsim.cli",
    ),
    "training imports the command line": (
        "training/export.py",
        "def _wrong():\n    import worldsim.cli.export  # noqa\n",
        "training.export -> worldsim.cli.export",
    ),
    "a cycle in training": (
        "training/rl_common.py",
        "def _wrong():\n    import training.rl_ppo  # noqa\n",
        "No cycles are allowed in training",
    ),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_a_wrong_import_breaks_a_contract(copy: Path, case: str) -> None:
    file, code, report = WRONG[case]
    path = copy / file
    original = path.read_text()
    try:
        path.write_text(original + "\n\n" + code)
        result = lint_imports(copy)
    finally:
        path.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert report in result.stdout, result.stdout


def test_the_copy_itself_holds(copy: Path) -> None:
    """The copy the wrong imports are added to passes as it is (so they are what breaks it)."""
    result = lint_imports(copy)
    assert result.returncode == 0, result.stdout + result.stderr
