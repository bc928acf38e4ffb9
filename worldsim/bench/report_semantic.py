"""report.md's semantic sections: what a player sees (tiles, scroll, rewards, long play)."""

from __future__ import annotations

from typing import Any

__all__ = ["applies_line", "semantic_sections"]

SUBSETS = {
    "map": "all map tiles",
    "objects": "object tiles (not grass, sand, path)",
    "seen": "tiles already in view in the context",
    "seen_objects": "object tiles already in view in the context",
}
VARIANTS = {
    "model": "model (open loop)",
    "copy_last": "copy-last-frame",
    "oracle": "oracle scroller",
    "teacher_forced": "teacher-forced next frame",
}


def _table(header: list[str], rows: list[list[Any]], fmt: Any) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |" for r in rows
    ]
    return [*lines, ""]


def applies_line(report: dict[str, Any]) -> str:
    """Which metric families this report holds, for the game at hand."""
    sem = report.get("semantic", {})
    have = ["frame metrics (PSNR, SSIM)"]
    if report["controllability"].get("idm"):
        have.append("inverse-dynamics action accuracy")
    if "delta_psnr" in report["controllability"]:
        have.append("Δ PSNR")
    names = {"semantic": "tile accuracy", "scroll": "scroll control", "realism": "tile realism"}
    have += [names[a] for a in sem.get("applies", []) if a in names]
    missing = [v for k, v in names.items() if k not in sem.get("applies", [])]
    text = "Metrics in this report: " + ", ".join(have) + "."
    if missing:
        text += " Not applicable here: " + ", ".join(missing) + "."
    return text


def semantic_sections(report: dict[str, Any], fmt: Any) -> list[str]:
    """The tables behind the semantic verdict (empty when no semantic metric ran)."""
    sem = report.get("semantic", {})
    lines: list[str] = []
    if "tiles" in sem:
        steps = [k for k in next(iter(sem["tiles"]["summary"]["map"].values())) if k.isdigit()]
        lines += [
            "## Tiles: what a player sees",
            "",
            "Share of tiles of the right class (the tile classifier reads generated frames; the "
            "real classes come from the game). The oracle scroller moves the last real frame's "
            "tiles by the true displacement and keeps every object; tiles it cannot know count "
            "as wrong.",
            "",
        ]
        rows = []
        for subset, title in SUBSETS.items():
            for variant, name in VARIANTS.items():
                row = sem["tiles"]["summary"][subset].get(variant)
                if row is not None:
                    rows.append([title, name, *(row[s] for s in steps), row["mean_1_16"]])
        lines += _table(["tiles", "", *(f"@{s}" for s in steps), "mean 1-16"], rows, fmt)
    if "tiles_view_given" in sem:
        block = sem["tiles_view_given"]["summary"]
        steps = [k for k in block["map"]["model"] if k.isdigit()]
        lines += [
            "",
            "The same with the real view motion given to the model (one sample per clip), as "
            "the oracle scroller has it: open loop, an obstacle the model invents on the real "
            "path stops its walk, and every tile seen before is then compared with another "
            "place. Told where the view went, the rows below measure memory alone.",
            "",
        ]
        label = {**VARIANTS, "model": "model (view motion given)"}
        rows = [
            [SUBSETS[subset], label[variant], *(row[s] for s in steps), row["mean_1_16"]]
            for subset in ("objects", "seen_objects")
            for variant in VARIANTS
            if (row := block[subset].get(variant)) is not None
        ]
        lines += _table(["tiles", "", *(f"@{s}" for s in steps), "mean 1-16"], rows, fmt)
    if "terrain" in sem:
        lines += [
            "## Terrain: does the ground look like the game's",
            "",
            "Total-variation distance between the generated and the real continuations' mix of "
            "tile classes and of neighbour pairs (across, down), pooled by quarter of the "
            "horizon; the floor is the distance between two halves of the real clips. Stripes "
            "of invented terrain push one same-class share up, a speckle pulls both down.",
            "",
        ]
        rows = []
        for q in sem["terrain"]["by_quarter"]:
            sa, sd = q["same_across"], q["same_down"]
            rows.append(
                [
                    f"{q['steps'][0]}-{q['steps'][1]}",
                    *(
                        f"{fmt(q[k + '_tv'])} ({fmt(q['floor'][k + '_tv'])})"
                        for k in ("class", "across", "down")
                    ),
                    f"{fmt(sa['generated'])} / {fmt(sa['real'])}",
                    f"{fmt(sd['generated'])} / {fmt(sd['real'])}",
                ]
            )
        lines += _table(
            ["steps", "classes (floor)", "pairs across (floor)", "pairs down (floor)",
             "one class across: generated / real", "one class down: generated / real"],
            rows, fmt,
        )  # fmt: skip
    if "scroll" in sem:
        sc = sem["scroll"]
        lines += [
            "## Scroll control",
            "",
            "One teacher-forced step after real context, on move transitions whose real scroll "
            f"(or stay) shows in the real tiles ({sc['moves']} moves, {sc['unclear_real']} unclear).",
            "",
        ]
        rows = []
        for key, title in (
            ("agreement", "real scroll: generated scrolls the same way"),
            ("false_scroll", "blocked move: generated scrolls anyway"),
            ("opposite_real_way", "opposite key: generated still scrolls the real way"),
        ):
            block = sc.get(key, {})
            rows.append(
                [title]
                + [
                    f"{fmt(block[d]['share'])} ({block[d]['n']})" if d in block else "–"
                    for d in ("left", "right", "up", "down", "all")
                ]
            )
        lines += _table(["", "left", "right", "up", "down", "all"], rows, fmt)
    if "long_horizon" in sem:
        lines += [
            "## Long play",
            "",
            "Share of tiles within the realism threshold of a real tile (threshold: "
            f"{fmt(sem['tile_model']['threshold_rms'])} RMS, which "
            f"{fmt(sem['tile_model']['metrics'].get('realism', {}).get('held_out_share_real'))} "
            "of held-out real tiles meet).",
            "",
        ]
        rows = []
        for policy, block in sem["long_horizon"].items():
            for part in ("map", "inventory"):
                vals = [v.get(part) for v in block["at"].values()]
                if any(v is not None for v in vals):
                    rows.append([policy, part, *vals])
            if "avatar" in block:  # the class every context shows at the view's centre
                for part, name in (("avatars", "a frame"), ("avatar_missing", "gone from centre")):
                    vals = [v.get(part) for v in block["at"].values()]
                    rows.append([policy, f"{block['avatar']} {name}", *vals])
        at = list(next(iter(sem["long_horizon"].values()))["at"])
        lines += _table(["actions", "tiles", *(f"@{s}" for s in at)], rows, fmt)
    if "realism_open_loop" in sem:
        curve = sem["realism_open_loop"]["mean"]
        steps = [s for s in (1, 4, 16, 64) if s <= len(curve)]
        lines += [
            "Open-loop rollouts, share of tiles that look real: "
            + ", ".join(f"{fmt(curve[s - 1])}@{s}" for s in steps)
            + ".",
            "",
        ]
    if "tile_model" in sem and sem["tile_model"]["metrics"].get("held_out"):
        h = sem["tile_model"]["metrics"]["held_out"]
        lines += [
            f"Tile classifier: {fmt(h['accuracy'])} accuracy on {h['tiles']:,} held-out real map "
            f"tiles ({fmt(h['object_accuracy'])} on object tiles).",
            "",
        ]
    return lines
