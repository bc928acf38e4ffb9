"""Side-by-side gallery: mp4 videos of real | generated | difference (PyAV) and an index.html."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["side_by_side", "write_gallery", "write_video"]

MIN_HEIGHT = 256  # small frames are scaled up (nearest neighbour) to at least this height


def side_by_side(
    real: np.ndarray,
    generated: np.ndarray,
    context: int,
    *,
    real_labels: np.ndarray | None = None,
    generated_labels: np.ndarray | None = None,
    tiles: dict[str, Any] | None = None,
) -> np.ndarray:
    """Video frames uint8 [T, H', W', 3]: real | generated | |difference| x 2, scaled up.

    A strip under the generated panel is grey over the context frames (copied from the real
    clip) and red over generated ones. With tile labels ([T, R, C]) and `tiles` ({"grid",
    "names", "background"}), object tiles carry their class code and generated tiles whose
    class differs from the real one are framed in red.
    """
    T, H, W, _ = real.shape
    gap = max(1, H // 16)  # between panels, and the strip's height
    diff = np.clip(np.abs(real.astype(np.int16) - generated.astype(np.int16)) * 2, 0, 255).astype(
        np.uint8
    )
    strip = np.zeros((T, gap, W, 3), np.uint8)
    strip[:context] = 128
    strip[context:] = (220, 40, 40)
    pad = np.zeros((T, H, gap, 3), np.uint8)
    body = np.concatenate([real, pad, generated, pad, diff], axis=2)  # [T, H, 3W + 2 gap, 3]
    marks = np.zeros((T, gap, body.shape[2], 3), np.uint8)
    marks[:, :, W + gap : 2 * W + gap] = strip
    video = np.concatenate([body, marks], axis=1)
    scale = max(1, -(-MIN_HEIGHT // H))
    video = video.repeat(scale, axis=1).repeat(scale, axis=2)
    if tiles is not None and real_labels is not None and generated_labels is not None:
        from worldsim.bench.gallery_tiles import annotate

        args = (tiles["grid"], scale, tiles["names"], tiles["background"])
        hs, ws, gs = H * scale, W * scale, gap * scale
        video[:, :hs, :ws] = annotate(video[:, :hs, :ws], real_labels, *args)
        video[:, :hs, ws + gs : 2 * ws + gs] = annotate(
            video[:, :hs, ws + gs : 2 * ws + gs], generated_labels, *args, reference=real_labels
        )
    h, w = (
        video.shape[1] - video.shape[1] % 2,
        video.shape[2] - video.shape[2] % 2,
    )  # H.264: even sizes
    return np.ascontiguousarray(video[:, :h, :w])


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Encode uint8 frames [T, H, W, 3] as H.264 mp4 (yuv420p: plays in every browser)."""
    from fractions import Fraction

    import av

    rate = Fraction(max(float(fps), 1.0)).limit_denominator(1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_gallery(
    out: Path,
    gallery: list[dict[str, np.ndarray]],
    report: dict[str, Any],
    fps: float,
    long_gallery: dict[str, dict[str, np.ndarray]] | None = None,
) -> list[str]:
    """gallery/clip_NNN.mp4 for every kept clip and index.html playing them (with the plots).

    `long_gallery` (policy -> {"frames": [k, n, H, W, 3], "real": [k, n, R, C]}) adds
    gallery/long_POLICY_NNN.mp4: time-lapses of the long-horizon rollouts, tiles that no longer
    look real tinted red.

    Returns:
        Video file names relative to `out`.
    """
    folder = out / "gallery"
    folder.mkdir(exist_ok=True)
    context = report["settings"]["context"]
    refs = report.get("provenance", {}).get("data", {}).get("clips") or []
    names, cards = [], []
    tiles = report.get("semantic", {}).get("tile_model")
    for item in gallery:
        i = item["index"]
        name = f"gallery/clip_{i:03d}.mp4"
        video = side_by_side(
            item["real"],
            item["generated"],
            context,
            real_labels=item.get("real_labels"),
            generated_labels=item.get("generated_labels"),
            tiles=tiles,
        )
        write_video(out / name, video, fps)
        names.append(name)
        where = (
            f"episode {refs[i]['key']} from frame {refs[i]['start']}"
            if i < len(refs)
            else f"clip {i}"
        )
        cards.append(
            f'<figure><video src="{name}" autoplay loop muted playsinline controls></video>'
            f"<figcaption>{html.escape(where)}</figcaption></figure>"
        )
    long_cards = []
    for policy, block in (long_gallery or {}).items():
        steps = report["semantic"]["long_horizon"][policy]["steps"]
        for j, (frames, real) in enumerate(zip(block["frames"], block["real"])):
            name = f"gallery/long_{policy}_{j:03d}.mp4"
            scale = max(1, -(-MIN_HEIGHT // frames.shape[1]))
            big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
            if tiles is not None:
                from worldsim.bench.gallery_tiles import shade_unreal

                big = shade_unreal(big, real, tiles["grid"], scale)
            write_video(out / name, big[:, : big.shape[1] // 2 * 2, : big.shape[2] // 2 * 2], 4)
            names.append(name)
            long_cards.append(
                f'<figure><video src="{name}" autoplay loop muted playsinline controls></video>'
                f"<figcaption>{html.escape(policy)}, steps {steps[0]}-{steps[-1]} every "
                f"{steps[1] - steps[0] if len(steps) > 1 else 1}</figcaption></figure>"
            )
    plots = "".join(
        f'<img src="{html.escape(p)}" alt="{html.escape(p)}">'
        for p in report.get("files", {}).get("plots", [])
    )
    lines = [
        *report.get("semantic", {}).get("verdict", {}).get("text", []),
        *report["verdict"]["text"],
    ]
    verdict = "".join(f"<li>{html.escape(t)}</li>" for t in lines)
    s = report["settings"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>worldsim rollout fidelity</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; }} video {{ image-rendering: pixelated; max-width: 100%; }}
figcaption {{ font-size: 0.85rem; color: #555; }} img {{ max-width: 48%; }}
</style></head><body>
<h1>Rollout fidelity</h1>
<p><code>{html.escape(report.get("command", ""))}</code></p>
<p>Each video: <b>real</b> | <b>generated</b> | <b>difference</b> (x2). {context} real context frames
(grey strip), then {s["horizon"]} frames the model dreamt from the logged actions (red strip), at {fps:g} frames/s.</p>
<ul>{verdict}</ul>
<p>With tile labels, object tiles carry their class (tr tree, co cow, pl player, ...) and generated
tiles of the wrong class are framed in red.</p>
<div class="grid">{"".join(cards)}</div>
{"<h2>Long play</h2><p>Time-lapses of long rollouts; tiles that no longer look like any real tile are tinted red.</p><div class='grid'>" + "".join(long_cards) + "</div>" if long_cards else ""}
<h2>Metrics against horizon</h2><div>{plots}</div>
<p>All numbers: <a href="report.md">report.md</a>, <a href="report.json">report.json</a>.</p>
</body></html>
"""
    (out / "index.html").write_text(page)
    return names
