"""`worldsim export CKPT --out DIR`: a Lightning training checkpoint -> a released world model.

    worldsim export runs/crafter_S/version_0/checkpoints/last.ckpt --out models/crafter_S

The release holds the EMA weights (safetensors), the model config, the spaces and a few real
starting contexts read from the episode store the run trained on (or --store); load it with
`WorldModel.from_checkpoint(DIR)`. The work is `training.export.export_checkpoint`.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from training.export import export_checkpoint  # imports torch and Lightning

    path = export_checkpoint(
        args.ckpt,
        args.out,
        store=args.store,
        contexts=args.contexts,
        context_frames=args.context_frames,
        episode_starts=args.episode_starts,
        split=args.split,
        weights=args.weights,
        sampler_steps=args.sampler_steps,
        guidance=args.guidance,
        motion_temperature=args.motion_temperature,
    )
    print(f"wrote {path} (load with WorldModel.from_checkpoint({str(path)!r}))")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="turn a training .ckpt into a released world model (EMA weights)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "ckpt", help="Lightning checkpoint of a world-model run (e.g. .../checkpoints/last.ckpt)"
    )
    p.add_argument("--out", required=True, help="release folder to write")
    p.add_argument(
        "--store", default=None, help="episode store for starting contexts (default: the run's)"
    )
    p.add_argument(
        "--contexts", type=int, default=8, help="starting contexts to include (default 8)"
    )
    p.add_argument(
        "--context-frames",
        type=int,
        default=None,
        help="frames per starting context (default: half the model context)",
    )
    p.add_argument(
        "--episode-starts",
        action="store_true",
        help="starting contexts from episodes' first frames, marked so (the game's timers "
        "then run from the dream's first step)",
    )
    p.add_argument(
        "--split",
        default="val",
        choices=["val", "test", "train"],
        help="store split of the contexts",
    )
    p.add_argument(
        "--weights",
        default="ema",
        choices=["ema", "trained"],
        help="which weights to release (default ema)",
    )
    p.add_argument(
        "--sampler-steps",
        type=int,
        default=None,
        help="the release's default sampler steps (default: the run's)",
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="the release's default action-guidance scale (default: the run's)",
    )
    p.add_argument(
        "--motion-temperature",
        type=float,
        default=None,
        help="the release's motion-kernel sampling temperature (default: the run's, 1)",
    )
    p.set_defaults(func=run)
