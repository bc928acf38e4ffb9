"""Benchmark output: report.json (every number, command, hashes, seeds), report.md, plots and gallery."""

from __future__ import annotations

import datetime
import json
import math
import platform
from pathlib import Path
from typing import Any

from worldsim.bench.fidelity import FidelityResult
from worldsim.bench.report_semantic import applies_line, semantic_sections
from worldsim.data.store import jsonable

__all__ = ["markdown", "sweep_row", "write_report"]

VARIANTS = {
    "model": "model (open loop)",
    "copy_last": "copy-last-frame",
    "teacher_forced": "teacher-forced next frame",
    "random_actions": "model, random actions",
}
UNITS = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓"}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(c if isinstance(c, str) else _fmt(c) for c in row) + " |" for row in rows
    ]
    return [*lines, ""]


def _frame_tables(report: dict[str, Any]) -> list[str]:
    steps = [str(s) for s in report["settings"]["summary_steps"]]
    out = []
    for metric, label in UNITS.items():
        if metric not in report["summary"]:
            continue
        rows = []
        for variant, name in VARIANTS.items():
            block = report["summary"][metric].get(variant)
            if block is None:
                continue
            for subset in ("all", "moving"):
                rows.append(
                    [
                        name,
                        "all" if subset == "all" else "moving",
                        *(block[subset][s] for s in steps),
                        block[subset]["mean"],
                    ]
                )
        out += [
            f"### {label}",
            "",
            *_table(["", "frames", *(f"@{s}" for s in steps), "mean"], rows),
        ]
    return out


def _idm_rows(idm: dict[str, Any], random_idm: dict[str, Any] | None) -> list[list[Any]]:
    rows = []
    for key, name in (
        ("real", "real transitions"),
        ("teacher_forced", "teacher-forced transitions"),
        ("generated", "generated, true actions"),
    ):
        if key in idm:
            s = idm[key]
            rows.append([name, s["accuracy"], s["f1"], s["exact"], s["box_mae"], s["n"]])
    if random_idm:
        s = random_idm
        rows.append(
            ["generated, random actions", s["accuracy"], s["f1"], s["exact"], s["box_mae"], s["n"]]
        )
    return rows


def _idm_recall_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Per-action recall of the first classification head (<= 32 classes), real vs generated."""
    idm = report["controllability"]["idm"]
    heads = idm["real"]["heads"]
    name = next((k for k, v in heads.items() if "recall" in v), None)
    if name is None or len(heads[name]["recall"]) > 32:
        return []
    n = len(heads[name]["recall"])
    collected = report["provenance"].get("data", {}).get("collected_with") or {}
    labels = collected.get("action_names") if len(heads) == 1 else None
    if not labels or len(labels) != n:
        labels = [f"{name} {i}" for i in range(n)]
    variants = [k for k in ("real", "teacher_forced", "generated") if k in idm]
    return [
        [
            labels[i],
            heads[name]["support"][i],
            *(idm[k]["heads"][name]["recall"][i] for k in variants),
        ]
        for i in range(n)
    ]


def markdown(report: dict[str, Any]) -> str:
    """report.md from the report.json dict."""
    s = report["settings"]
    lines = [
        f"# Rollout fidelity: {Path(report['provenance'].get('checkpoint', {}).get('path', 'model')).name}",
        "",
        f"`{report['command']}`",
        "",
        f"{s['clips']} clips of {s['context']} real context frames + {s['horizon']} generated frames, "
        f"{s['samples']} sample(s) each; frames {'x'.join(map(str, s['frame_shape']))}; sampler steps "
        f"{s['steps'] or 'model default'}; {100 * report['summary']['moving_share']:.0f}% of real steps move.",
        "",
        "## Verdict",
        "",
        applies_line(report),
        "",
    ]
    texts = [
        *report.get("semantic", {}).get("verdict", {}).get("text", []),
        *report["verdict"]["text"],
    ]
    lines += [f"- **{t}**" if "NOT" in t else f"- {t}" for t in texts] or ["- (no baseline)"]
    lines += ["", *semantic_sections(report, _fmt)]
    lines += [
        "",
        "## Frame metrics",
        "",
        "Mean over clips and samples at horizon steps; *moving*: only steps where the real frame "
        f"changed from the one before. PSNR per frame is capped at {s['psnr_cap_db']:g} dB.",
        "",
    ]
    lines += _frame_tables(report)
    c = report["controllability"]
    if c:
        lines += ["## Action controllability", ""]
    if "delta_psnr" in c:
        d = c["delta_psnr"]
        lines += [
            "Genie's Δ PSNR: PSNR with the logged actions minus PSNR with uniformly random actions "
            "(same clips, same noise).",
            "",
        ]
        lines += _table(
            ["", *(f"t={t}" for t in d["at"])],
            [["all frames", *d["at"].values()], ["moving frames", *d["moving_at"].values()]],
        )
    if "idm" in c:
        lines += [
            "Inverse-dynamics model reading the action back from each transition "
            "(accuracy / macro-F1 over categorical action components; exact: all components right).",
            "",
        ]
        lines += _table(
            ["transitions", "accuracy", "F1", "exact", "box MAE", "n"],
            _idm_rows(c["idm"], c.get("idm_random_actions")),
        )
        rows = _idm_recall_rows(report)
        if rows:
            kinds = [
                k.replace("_", "-")
                for k in ("real", "teacher_forced", "generated")
                if k in c["idm"]
            ]
            lines += ["Recall per action (which actions can be read back at all):", ""]
            lines += _table(["action", "real count", *(f"{k} recall" for k in kinds)], rows)
    if report["events"]:
        lines += ["## Rewards and episode ends", ""]
        rows = []
        for variant, ev in report["events"].items():
            for kind in (
                "reward_positive",
                "reward_negative",
                "reward_unlock",
                "reward_health",
                "termination",
            ):
                if kind not in ev:
                    continue
                e = ev[kind]
                rows.append(
                    [
                        variant.replace("_", " "),
                        kind.replace("_", " "),
                        e["precision"],
                        e["recall"],
                        e["f1"],
                        e["support"],
                        e["predicted"],
                    ]
                )
        lines += _table(
            ["rollout", "event", "precision", "recall", "F1", "real", "predicted"], rows
        )
        lines += [
            f"Reward |error| (open loop): {_fmt(report['events'].get('open_loop', {}).get('reward_mae'))}",
            "",
        ]
    if report["fvd"]:
        f = report["fvd"]
        lines += ["## FVD (I3D, 16 frames)", ""]
        lines += _table(["", "FVD ↓"], [[VARIANTS[k], f[k]] for k in VARIANTS if k in f])
        lines += [f"{f['clips']['real']} real clips (few clips make FVD biased upwards).", ""]
    if report.get("loops"):
        lines += [
            "## Loop consistency",
            "",
            "Out n steps and back n; frame at the return vs the frame at "
            "the start (higher PSNR: better remembered).",
            "",
        ]
        rows = [
            [
                name,
                r["n"],
                r["model"]["psnr"],
                r["real"]["psnr"],
                r["model_vs_real_at_return"]["psnr"],
                r["model"]["mae"],
                r["real"]["mae"],
            ]
            for name, r in report["loops"].items()
        ]
        lines += _table(
            [
                "loop",
                "n",
                "model PSNR",
                "real game PSNR",
                "model vs real at return",
                "model MAE",
                "real MAE",
            ],
            rows,
        )
    sp = report["speed"]
    lines += [
        "## Speed",
        "",
        f"Open loop: {_fmt(sp['open_loop_frames_per_s'])} generated frames/s at batch "
        f"{sp['batch_size']} on {report['environment']['device']}"
        + (
            f"; teacher-forced: {_fmt(sp['teacher_forced_frames_per_s'])} frames/s."
            if "teacher_forced_frames_per_s" in sp
            else "."
        ),
        "",
    ]
    if report.get("sweep"):
        lines += ["## Sampler steps", ""]
        rows = [
            [r["steps"], r["psnr_all"], r["psnr_moving"], r["delta_psnr_4"], r["frames_per_s"]]
            for r in report["sweep"]
        ]
        lines += _table(
            ["steps", "PSNR mean (all)", "PSNR mean (moving)", "Δ PSNR t=4", "frames/s"], rows
        )
    if report["skipped"]:
        lines += ["## Skipped", "", *(f"- {k}: {v}" for k, v in report["skipped"].items()), ""]
    plots = report.get("files", {}).get("plots", [])
    if plots:
        lines += ["## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots), ""]
    if report.get("files", {}).get("gallery"):
        lines += ["Gallery (real | generated | difference): open `index.html`.", ""]
    p = {"checkpoint": {}, "data": {}, **report["provenance"]}
    lines += [
        "## Provenance",
        "",
        f"- checkpoint sha256 {p['checkpoint'].get('sha256')}",
        f"- data {p['data'].get('path')}: metadata sha256 {p['data'].get('metadata_sha256')}, "
        f"episode list sha256 {p['data'].get('episodes_sha256')}, clips sha256 {p['data'].get('clips_sha256')}",
        f"- seed {s['seed']}; worldsim {report['environment']['worldsim']}, torch {report['environment']['torch']}",
        "",
    ]
    return "\n".join(lines)


def sweep_row(steps: int, r: FidelityResult) -> dict[str, Any]:
    """One row of the sampler-steps table: the headline numbers of one evaluation."""
    delta = r.controllability.get("delta_psnr", {}).get("at", {})
    return {
        "steps": steps,
        "psnr_all": r.summary["psnr"]["model"]["all"]["mean"],
        "psnr_moving": r.summary["psnr"]["model"]["moving"]["mean"],
        "delta_psnr_4": delta.get("4"),
        "frames_per_s": r.speed["open_loop_frames_per_s"],
        "summary": r.summary["psnr"]["model"],
    }


def write_report(
    out_dir: str | Path,
    result: FidelityResult,
    *,
    command: str,
    provenance: dict[str, Any],
    fps: float = 10.0,
    device: str = "cpu",
    sweep: list[dict[str, Any]] | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Write report.json, report.md, PNG plots, gallery mp4s and index.html into `out_dir`.

    Returns:
        The report dict written as report.json.
    """
    import torch

    import worldsim
    from worldsim.bench.gallery import write_gallery
    from worldsim.bench.plots import write_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": {
            "worldsim": worldsim.__version__,
            "torch": torch.__version__,
            "device": device,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "provenance": provenance,
        **result.to_dict(),
        "sweep": sweep or [],
    }
    skipped = report["skipped"]
    files: dict[str, Any] = {"plots": [], "gallery": []}
    report["files"] = files
    try:
        files["plots"] = write_plots(out, report)
    except ImportError:
        skipped["plots"] = "matplotlib is not installed: pip install matplotlib"
    if result.gallery or result.long_gallery:
        files["gallery"] = write_gallery(
            out, result.gallery, report, fps=fps, long_gallery=result.long_gallery
        )
    (out / "report.json").write_text(json.dumps(report, indent=1, default=jsonable))
    (out / "report.md").write_text(markdown(report))
    if log:
        log(
            f"wrote {out / 'report.md'}, {out / 'report.json'}, {len(files['plots'])} plots, "
            f"{len(files['gallery'])} videos ({out / 'index.html'})"
        )
    return report
