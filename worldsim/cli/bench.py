"""`worldsim bench fidelity`: measure how faithfully a world model follows the real game.

`train-idm` and `train-tiles`, which train the models it scores with, are in `bench_training`.

Examples:
    worldsim bench train-idm --data data/crafter --out idm/crafter.safetensors
    worldsim bench fidelity --checkpoint releases/crafter-S --data data/crafter-heldout \\
        --split test --episodes 32 --horizon 64 --samples 2 --idm idm/crafter.safetensors --out bench/crafter
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from worldsim.cli.argtypes import (
    device,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from worldsim.cli.bench_training import auto_device, register_training
from worldsim.errors import CheckpointError, StoreError, WorldsimError

# Presets that fix the protocol so numbers line up with published tables.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "default": {},
    # MineWorld / Oasis table: 1 prompt frame + 15 generated frames at 224x384, VPT actions.
    "mineworld": {"context": 1, "horizon": 15, "frame_shape": (224, 384, 3)},
}
# `worldsim bench fidelity` options: (flag, type, default, metavar, help); "(default: ...)"
# is appended to the help where the default is not None.
FIDELITY_OPTIONS: list[tuple[str, Any, Any, str | None, str]] = [
    ("--split", str, "test", None, "train/val/test split, or all: a store kept for evaluation"),
    ("--episodes", positive_int, 32, "N", "at most this many episodes"),
    ("--clips-per-episode", positive_int, 2, "C", "clips per episode, spread over it"),
    (
        "--context",
        positive_int,
        None,
        "K",
        "real context frames (default: the model's context - 1)",
    ),
    ("--horizon", positive_int, None, "H", "frames generated open loop (default: 64)"),
    (
        "--samples",
        positive_int,
        None,
        "S",
        "rollouts per clip, each with its own seed (default: 2)",
    ),
    (
        "--steps",
        positive_int,
        None,
        "N",
        "sampler steps; several values: one evaluation each (default: model's)",
    ),
    (
        "--guidance",
        non_negative_float,
        None,
        "G",
        "classifier-free guidance scale (default: model's)",
    ),
    ("--batch-size", positive_int, 16, "B", "clips per generate call"),
    ("--seed", int, 0, None, "seeds the clip choice, the rollouts and the random actions"),
    ("--device", device, None, None, "cpu, cuda, cuda:1, ... (default: cuda if available)"),
    ("--idm", str, None, "FILE", "inverse-dynamics model from `worldsim bench train-idm`"),
    (
        "--tiles",
        str,
        None,
        "FILE",
        "tile model from `worldsim bench train-tiles`: tile accuracy, scroll, realism",
    ),
    (
        "--long-horizon",
        non_negative_int,
        1000,
        "N",
        "with --tiles: roll N steps under noop and random play and check the tiles stay real "
        "(0: skip)",
    ),
    ("--long-horizon-clips", positive_int, 8, "N", "contexts the long-horizon rollouts start from"),
    (
        "--lpips-weights",
        str,
        None,
        "PATH",
        "alex.pth (lpips v0.1) + alexnet-owt-7be5be79.pth, or their folder",
    ),
    ("--fvd-weights", str, None, "FILE", "i3d_torchscript.pt (the I3D of StyleGAN-V's FVD)"),
    ("--gallery", non_negative_int, 8, "N", "clips shown as real | generated | difference videos"),
    ("--loop-steps", positive_int, 4, "n", "loop tests go n steps out and n back"),
    ("--loops", positive_int, 16, "M", "loops per loop test"),
    ("--protocol", str, "default", None, "mineworld: 1 context + 15 generated frames at 224x384"),
]
SWITCHES = [
    ("--no-loops", "skip the loop-consistency tests"),
    ("--no-teacher-forced", "skip the teacher-forced baseline"),
    ("--no-random-actions", "skip the random-action rollouts (Δ PSNR)"),
]
CHOICES = {"--split": ["train", "val", "test", "all"], "--protocol": sorted(PROTOCOLS)}
MANY = {"--steps", "--lpips-weights"}  # options taking several values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="benchmark a world model against the real game (fidelity, IDM)"
    )
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    bsub.required = True
    f = bsub.add_parser(
        "fidelity",
        help="open-loop rollouts from held-out real context vs the real continuation",
        description="Writes DIR/report.json, report.md, plot_*.png, gallery/*.mp4 and index.html.",
        epilog="example: worldsim bench fidelity --checkpoint releases/crafter-S --data data/heldout "
        "--split all --horizon 64 --samples 2 --idm idm.safetensors --out bench/crafter",
    )
    f.add_argument(
        "--checkpoint", metavar="CK", required=True, help="release folder (worldsim export)"
    )
    f.add_argument("--data", metavar="STORE", required=True, help="store of held-out real episodes")
    f.add_argument("--out", metavar="DIR", required=True, help="output directory")
    for flag, kind, default, metavar, text in FIDELITY_OPTIONS:
        suffix = "" if default is None else f" (default: {default})"
        f.add_argument(
            flag,
            type=kind,
            default=default,
            metavar=metavar,
            choices=CHOICES.get(flag),
            nargs="+" if flag in MANY else None,
            help=text + suffix,
        )
    for flag, text in SWITCHES:
        f.add_argument(flag, action="store_true", help=text)
    f.set_defaults(func=run_fidelity)

    register_training(bsub)


def _command(args: argparse.Namespace) -> str:
    """The full command with every option's effective value (defaults included)."""
    words = ["worldsim", "bench", "fidelity"]
    words += ["--checkpoint", args.checkpoint, "--data", args.data, "--out", args.out]
    for flag, *_ in FIDELITY_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if isinstance(value, list):
            words += [flag, *map(str, value)]
        elif value is not None:
            words += [flag, str(value)]
    words += [flag for flag, _ in SWITCHES if getattr(args, flag[2:].replace("-", "_"))]
    return shlex.join(words)


def _load_idm(path: str, device: str) -> Any:
    """The IDM at --idm, or CheckpointError naming the flag and how to make one."""
    from safetensors import SafetensorError

    from worldsim.bench.idm import load_idm

    try:
        idm, _ = load_idm(path, device=device)
    except CheckpointError as e:
        raise CheckpointError(f"--idm {path}: {e}") from None
    except SafetensorError as e:
        raise CheckpointError(
            f"--idm {path} is not an inverse-dynamics model ({e}): pass the .safetensors file "
            f"written by `worldsim bench train-idm --data STORE --out {path}`"
        ) from None
    return idm


def run_fidelity(args: argparse.Namespace) -> int:
    from worldsim.bench.data import (
        checkpoint_fingerprint,
        select_clips,
        sha256_file,
        store_fingerprint,
    )
    from worldsim.bench.fidelity import evaluate_rollouts
    from worldsim.bench.perceptual import MetricUnavailable, load_i3d, load_lpips
    from worldsim.bench.report import sweep_row, write_report
    from worldsim.data import EpisodeStore
    from worldsim.spaces import check_compatible
    from worldsim.world_model import WorldModel

    device = auto_device(args.device)
    proto = PROTOCOLS[args.protocol]
    idm = None
    if args.idm:  # before the slow part: a wrong file fails at once
        idm = _load_idm(args.idm, device)
    store = EpisodeStore.open(args.data)
    wm = WorldModel.from_checkpoint(args.checkpoint, device=device)
    if tuple(store.frame_shape) != tuple(wm.observation_space.shape):
        raise StoreError(
            f"{args.data} holds {store.frame_shape} frames, the model makes "
            f"{tuple(wm.observation_space.shape)}: benchmark on data of the model's game and size"
        )
    check_compatible(store.action_space, wm.action_space, "the model's action space",
                     error=CheckpointError,
                     fix=f"{args.data} has the latter: a model of another game?")  # fmt: skip
    if "frame_shape" in proto and tuple(store.frame_shape) != proto["frame_shape"]:
        raise WorldsimError(
            f"--protocol {args.protocol} needs {proto['frame_shape']} frames, the data has "
            f"{store.frame_shape}: import the recordings with --size 224 384"
        )
    # None: the protocol's value, else the default (0 and negatives were refused by argparse).
    if args.context is None:
        args.context = proto.get("context") or max(1, wm.config.context - 1)
    if args.horizon is None:
        args.horizon = proto.get("horizon") or 64
    if args.samples is None:
        args.samples = proto.get("samples") or 2
    print(
        f"worldsim bench fidelity: {args.checkpoint} on {args.data} ({args.split}), device {device}"
    )
    clips = select_clips(
        store,
        args.split,
        length=args.context + args.horizon,
        episodes=args.episodes,
        clips_per_episode=args.clips_per_episode,
        seed=args.seed,
    )
    print(
        f"{len(clips.frames)} clips of {args.context} + {args.horizon} frames from "
        f"{len({r['key'] for r in clips.refs})} episodes"
    )
    skipped, weights = {}, {}
    lpips = fvd = None
    if args.idm:
        weights["idm"] = sha256_file(args.idm)
    else:
        skipped["idm"] = (
            "no --idm given: train one with `worldsim bench train-idm --data TRAIN_STORE "
            "--out idm.safetensors` and pass --idm idm.safetensors"
        )
    try:
        lpips = load_lpips(args.lpips_weights, device=device)
    except MetricUnavailable as e:
        skipped["lpips"] = str(e)
    try:
        fvd = load_i3d(args.fvd_weights, device=device)
        weights["fvd"] = sha256_file(args.fvd_weights)
    except MetricUnavailable as e:
        skipped["fvd"] = str(e)
    for name in ("lpips", "fvd"):
        if name in skipped:
            print(skipped[name])
    tiles = None
    if args.tiles:
        from worldsim.bench.tiles import load_tile_model

        tiles = load_tile_model(args.tiles, device=device)
        tiles.grid.check(store.frame_shape)
        weights["tiles"] = sha256_file(args.tiles)
        if clips.unlabelled:
            print(
                f"{clips.unlabelled} of {len(clips.frames)} clips come from episodes without tile "
                "labels: tile accuracy and scroll are skipped (see `worldsim data info`)"
            )
    results = []
    for i, steps in enumerate(args.steps or [None]):
        results.append(
            evaluate_rollouts(
                wm,
                clips.frames,
                clips.actions,
                rewards=clips.rewards,
                terminated=clips.terminated,
                context=args.context,
                horizon=args.horizon,
                samples=args.samples,
                steps=steps,
                guidance=args.guidance,
                seed=args.seed,
                batch_size=args.batch_size,
                idm=idm,
                lpips=lpips,
                fvd=fvd,
                teacher_forced=not args.no_teacher_forced,
                random_actions=not args.no_random_actions,
                gallery=args.gallery if i == 0 else 0,
                labels=clips.labels,
                label_spec=store.label_spec,
                tiles=tiles,
                long_horizon=args.long_horizon if i == 0 else 0,
                long_horizon_clips=args.long_horizon_clips,
                log=print,
            )
        )
    result = results[0]
    result.skipped.update(skipped)
    if result.fvd == {} and fvd is not None:
        result.skipped["fvd"] = "FVD needs >= 2 clips and context + horizon >= 16 frames"
    if not args.no_loops:
        from envs.loops import play_loops
        from worldsim.bench.loops import store_loop_tests

        result.loops = store_loop_tests(
            wm,
            store,
            split=args.split,
            context=args.context,
            n=args.loop_steps,
            count=args.loops,
            samples=args.samples,
            steps=(args.steps or [None])[0],
            guidance=args.guidance,
            seed=args.seed,
            skipped=result.skipped,
            log=print,
            play_real=play_loops,
        )
    sweep = (
        [sweep_row(s, r) for s, r in zip(args.steps, results)]
        if args.steps and len(results) > 1
        else None
    )
    provenance = {
        "checkpoint": checkpoint_fingerprint(args.checkpoint),
        "data": {**store_fingerprint(store, clips.refs), "split": args.split, "clips": clips.refs},
        "weights": weights,
        "seeds": {
            "seed": args.seed,
            "rollout_seed": "SeedSequence([seed, sample, first clip of batch])",
        },
        "argv": sys.argv,
    }
    write_report(
        args.out,
        result,
        command=_command(args),
        provenance=provenance,
        fps=store.fps,
        device=device,
        sweep=sweep,
        log=print,
    )
    for line in result.verdict["text"]:
        print(line)
    return 0
