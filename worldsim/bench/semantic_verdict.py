"""The semantic verdict: what a player would notice, in plain sentences and pass/fail checks.

Leads report.md. Each check compares the model with a bar a person would set: keep the
objects at least as well as copying the last frame and as an oracle that only scrolls, scroll
with the keys (>= 90% per direction), do not scroll on blocked moves (<= 5%), pay the rewards
(unlock recall and precision >= 0.5), and stay a real-looking world over long play (>= 95%
of map tiles). A failed check is written with NOT, so it shows at a glance.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BARS", "semantic_verdict"]

BARS = {
    "scroll_agreement": 0.9,
    "false_scroll": 0.05,
    "unlock_recall": 0.5,
    "unlock_precision": 0.5,
    "long_horizon_real": 0.95,
    "static_db": 40.0,
    "walk_last_quarter": 0.9,
    "terrain_tv": 0.2,  # total-variation distance of the last quarter's classes and pairs
}


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.2f}"


def _tiles(
    block: dict[str, Any], checks: dict[str, Any], lines: list[str], given: bool = False
) -> None:
    """The tile-accuracy lines of `block` (open_loop_tiles' result); `given`: the rollouts
    were told the real view motion (`semantic["tiles_view_given"]`), as the oracle is."""
    names = {"objects": "Object tiles", "seen_objects": "Objects already seen in the context",
             "map": "All map tiles"}  # fmt: skip
    if given:
        names = {"seen_objects": names["seen_objects"]}
    how = "open loop with the real view motion given" if given else "open loop"
    for subset, title in names.items():
        curves = block["curves"][subset]
        H = min(16, len(curves["model"]["mean"]))
        show = [s for s in (1, 4, 16) if s <= H]
        vals = {v: curves[v]["mean"] for v in ("model", "copy_last", "oracle")}
        losing = {
            base: [
                h + 1
                for h in range(H)
                if None not in (vals["model"][h], vals[base][h])
                and vals["model"][h] <= vals[base][h]
            ]
            for base in ("copy_last", "oracle")
        }
        ok = not losing["copy_last"] and not losing["oracle"]
        if subset != "map":
            checks[f"{subset}{'_view_given' if given else ''}_beat_baselines_1_{H}"] = ok
        row = "/".join(_f(vals["model"][s - 1]) for s in show)
        text = (
            f"{title}, {how}, steps {'/'.join(map(str, show))}: model {row}, copy-last "
            + "/".join(_f(vals["copy_last"][s - 1]) for s in show)
            + ", oracle scroller "
            + "/".join(_f(vals["oracle"][s - 1]) for s in show)
        )
        if ok:
            text += f": above both at every step 1-{H}."
        else:
            parts = [
                f"{'copy-last' if b == 'copy_last' else 'the oracle'} at {len(v)} of {H} steps"
                for b, v in losing.items()
                if v
            ]
            text += ": NOT above " + " and ".join(parts) + "."
        lines.append(text)


def _scroll(scroll: dict[str, Any], checks: dict[str, Any], lines: list[str]) -> None:
    agree = scroll["agreement"]
    dirs = [d for d in ("left", "right", "up", "down") if agree.get(d, {}).get("n")]
    ok = bool(dirs) and all(agree[d]["share"] >= BARS["scroll_agreement"] for d in dirs)
    checks["scroll_agreement"] = ok
    text = "Scroll with the keys (teacher-forced, real scrolls): " + ", ".join(
        f"{d} {_f(agree[d]['share'])} (n={agree[d]['n']})" for d in dirs
    )
    bar = f"{BARS['scroll_agreement']:.0%}"
    lines.append(text + (f": all at least {bar}." if ok else f": NOT all at least {bar}."))
    false = scroll["false_scroll"]["all"]
    if false["n"]:
        ok = false["share"] <= BARS["false_scroll"]
        checks["false_scroll"] = ok
        lines.append(
            f"Blocked moves that scroll anyway: {_f(false['share'])} (n={false['n']})"
            + (": at most 5%." if ok else ": NOT at most 5%.")
        )
    opp = scroll.get("opposite_real_way", {}).get("all")
    if opp and opp["n"]:
        ok = opp["share"] == 0
        checks["opposite_never_real_way"] = ok
        count = round(opp["share"] * opp["n"])
        lines.append(
            f"With the opposite key, the view still scrolls the real way in {count} of "
            f"{opp['n']} cases ({100 * opp['share']:.1f}%)" + (": never." if ok else ": NOT never.")
        )


def _rewards(events: dict[str, Any], checks: dict[str, Any], lines: list[str]) -> None:
    for variant in ("teacher_forced", "open_loop"):
        ev = events.get(variant)
        if not ev or "reward_unlock" not in ev:
            continue
        u, h = ev["reward_unlock"], ev["reward_health"]
        text = (
            f"Rewards, {variant.replace('_', '-')}: achievement unlocks recall {_f(u['recall'])}, "
            f"precision {_f(u['precision'])} ({u['support']} real, {u['predicted']} predicted); "
            f"health changes recall {_f(h['recall'])}, precision {_f(h['precision'])} "
            f"({h['support']} real)"
        )
        if variant == "teacher_forced" and u["support"]:
            ok = (u["recall"] or 0) >= BARS["unlock_recall"] and (u["precision"] or 0) >= BARS[
                "unlock_precision"
            ]
            checks["unlock_rewards"] = ok
            text += ": unlocks paid." if ok else ": unlocks NOT paid (recall and precision >= 0.5)."
        else:
            text += "."
        lines.append(text)


def _walk(walk: dict[str, Any], checks: dict[str, Any], lines: list[str]) -> None:
    q = walk["by_quarter"]
    H = len(walk["curve"]["mean"])
    if walk["n"] == 0 or q[-1] is None:
        return
    ok = (q[0] or 0) >= 0.5 and q[-1] >= BARS["walk_last_quarter"] * q[0]
    checks["walk_keeps_scrolling"] = ok
    lines.append(
        f"Open-loop walks (real scrolls the dream also makes, by quarter of {H} steps): "
        + "/".join(_f(x) for x in q)
        + (
            ": keeps walking (first quarter at least 0.5, last at least 90% of it)."
            if ok
            else ": NOT walking on (first quarter at least 0.5, last at least 90% of it)."
        )
    )


def _terrain(terrain: dict[str, Any], checks: dict[str, Any], lines: list[str]) -> None:
    last = terrain["by_quarter"][-1]
    tvs = [last[f"{k}_tv"] for k in ("class", "across", "down")]
    floors = [last["floor"][f"{k}_tv"] for k in ("class", "across", "down")]
    if any(v is None for v in tvs):
        return
    bar = BARS["terrain_tv"]
    ok = all(v <= bar for v in tvs)
    checks["terrain_looks_real"] = ok
    sa, sd = last["same_across"], last["same_down"]
    lines.append(
        f"Terrain of open-loop rollouts, steps {last['steps'][0]}-{last['steps'][1]}: distance "
        "to the real mix of tile classes / pairs across / pairs down "
        + "/".join(_f(v) for v in tvs)
        + " (two halves of the real clips: "
        + "/".join(_f(v) for v in floors)
        + f"); neighbours of one class across {_f(sa['generated'])} (real {_f(sa['real'])}), "
        f"down {_f(sd['generated'])} (real {_f(sd['real'])})"
        + (
            f": looks real (each at most {bar})."
            if ok
            else f": NOT like the real ground (each at most {bar})."
        )
    )


def _static(static: dict[str, Any], checks: dict[str, Any], lines: list[str]) -> None:
    if not static["n"]:
        return
    ok = static["median_db"] >= BARS["static_db"]
    checks["static_frames"] = ok
    lines.append(
        f"Still views (teacher-forced, real frame unchanged, n={static['n']}): median "
        f"{static['median_db']:.1f} dB, {static['share_at_bar']:.0%} at >= {static['bar_db']:.0f} dB "
        f"(copying the previous real frame: {static['copy_last_median_db']:.1f} dB, "
        f"{static['copy_last_share_at_bar']:.0%})"
        + (": at least 40 dB." if ok else ": NOT at least 40 dB.")
    )


def _long(long: dict[str, Any], checks: dict[str, Any], lines: list[str]) -> None:
    for policy, block in long.items():
        at = block["at"]
        shown = ", ".join(f"{_f(v['map'])}@{s}" for s, v in at.items())
        ok = block["min_map_real"] >= BARS["long_horizon_real"]
        checks[f"long_horizon_{policy}"] = ok
        inv = [v["inventory"] for v in at.values() if v.get("inventory") is not None]
        text = (
            f"Long play ({policy}, {block['steps'][-1]} steps, {block['clips']} rollouts): map "
            f"tiles that look real {shown}; lowest {_f(block['min_map_real'])}"
            + (f"; inventory {'/'.join(_f(x) for x in inv)}" if inv else "")
        )
        lines.append(text + (": stays real." if ok else ": NOT at least 95% throughout."))


def semantic_verdict(semantic: dict[str, Any], events: dict[str, Any]) -> dict[str, Any]:
    """{"text": [sentences], "checks": {name: passed}} from a FidelityResult's semantic block."""
    lines: list[str] = []
    checks: dict[str, Any] = {}
    if "tiles" in semantic:
        _tiles(semantic["tiles"], checks, lines)
    if "tiles_view_given" in semantic:
        _tiles(semantic["tiles_view_given"], checks, lines, given=True)
    if "walk" in semantic:
        _walk(semantic["walk"], checks, lines)
    if "terrain" in semantic:
        _terrain(semantic["terrain"], checks, lines)
    if "static_frames" in semantic:
        _static(semantic["static_frames"], checks, lines)
    if "scroll" in semantic:
        _scroll(semantic["scroll"], checks, lines)
    if "tiles" in semantic:
        _rewards(events, checks, lines)
    if "long_horizon" in semantic:
        _long(semantic["long_horizon"], checks, lines)
    if semantic.get("skipped"):
        lines.append(f"Semantic metrics skipped: {semantic['skipped']}")
    return {"text": lines, "checks": checks}
