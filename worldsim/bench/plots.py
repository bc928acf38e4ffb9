"""PNG plots of each benchmark metric against the horizon step, with the baselines (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_plots"]

STYLE = {  # variant -> (label, colour)
    "model": ("model (open loop)", "tab:blue"),
    "copy_last": ("copy-last-frame", "tab:gray"),
    "teacher_forced": ("teacher-forced next frame", "tab:green"),
    "random_actions": ("model, random actions", "tab:red"),
}
TITLES = {
    "psnr": "PSNR (dB, higher is better)",
    "ssim": "SSIM (higher is better)",
    "lpips": "LPIPS (lower is better)",
}


def _line(
    ax: Any, curve: dict[str, list], label: str, colour: str, dashed: bool, band: bool
) -> None:
    steps = [i + 1 for i, m in enumerate(curve["mean"]) if m is not None]
    means = [m for m in curve["mean"] if m is not None]
    if not steps:
        return
    ax.plot(
        steps,
        means,
        color=colour,
        linestyle="--" if dashed else "-",
        label=label,
        marker="." if len(steps) < 20 else None,
    )
    if band:
        sems = [curve["sem"][s - 1] or 0.0 for s in steps]
        ax.fill_between(
            steps,
            [m - e for m, e in zip(means, sems)],
            [m + e for m, e in zip(means, sems)],
            color=colour,
            alpha=0.15,
            linewidth=0,
        )


def _figure(title: str, ylabel: str):
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    fig = Figure(figsize=(7, 4.2), dpi=110, layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.set_xlabel("horizon step (generated frames after the context)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def write_plots(out: Path, report: dict[str, Any]) -> list[str]:
    """One PNG per frame metric (all steps solid, moving steps dashed), Δ PSNR and IDM accuracy.

    Returns:
        File names written, relative to `out`.
    """
    import matplotlib  # noqa: F401  (ImportError here: the caller reports plots as skipped)

    written = []
    for metric, title in TITLES.items():
        if metric not in report["curves"]:
            continue
        fig, ax = _figure(title, metric.upper())
        for variant, (label, colour) in STYLE.items():
            curves = report["curves"][metric].get(variant)
            if curves is None:
                continue
            _line(ax, curves["all"], f"{label}, all steps", colour, False, variant == "model")
            _line(ax, curves["moving"], f"{label}, moving steps", colour, True, False)
        ax.legend(fontsize=7)
        name = f"plot_{metric}.png"
        fig.savefig(out / name)
        written.append(name)
    c = report["controllability"]
    if "delta_psnr" in c:
        fig, ax = _figure("Δ PSNR: true actions minus random actions (dB)", "Δ PSNR (dB)")
        _line(ax, c["delta_psnr"]["curve"]["all"], "all steps", "tab:blue", False, True)
        _line(ax, c["delta_psnr"]["curve"]["moving"], "moving steps", "tab:blue", True, False)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.legend(fontsize=7)
        fig.savefig(out / "plot_delta_psnr.png")
        written.append("plot_delta_psnr.png")
    if "curve" in c.get("idm", {}):
        fig, ax = _figure(
            "Inverse-dynamics accuracy: is the driving action readable?", "accuracy (exact)"
        )
        _line(ax, c["idm"]["curve"]["real"]["all"], "real transitions", "tab:gray", False, False)
        _line(
            ax,
            c["idm"]["curve"]["generated"]["all"],
            "generated, all steps",
            "tab:blue",
            False,
            True,
        )
        _line(
            ax,
            c["idm"]["curve"]["generated"]["moving"],
            "generated, moving steps",
            "tab:blue",
            True,
            False,
        )
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        fig.savefig(out / "plot_idm.png")
        written.append("plot_idm.png")
    return written
