"""`worldsim data info | import | export`: inspect an episode store and convert other formats."""

from __future__ import annotations

import argparse
import json

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="inspect episode stores; import/export Minecraft recordings and Minari datasets",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    dsub.required = True

    info = dsub.add_parser(
        "info",
        help="episodes, frames, disk size, bytes/frame, action histogram",
        epilog="example: worldsim data info data/crafter",
    )
    info.add_argument("store", help="store directory or fsspec URL")
    info.add_argument("--json", action="store_true", help="print the figures as JSON")
    info.set_defaults(func=run_info)

    check = dsub.add_parser(
        "check",
        help="find incomplete, missing or damaged episodes; --repair sets them aside",
        description="Reads every episode whole (arrays, labels, every frame chunk). With "
        "--repair, each bad episode's folder moves to STORE/quarantine/KEY and the rest is "
        "left as it is. Exits 1 when problems were found (and not repaired).",
        epilog="example: worldsim data check data/crafter --repair",
    )
    check.add_argument("store", help="store directory or fsspec URL")
    check.add_argument("--repair", action="store_true", help="quarantine the bad episodes")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=run_check)

    imp = dsub.add_parser(
        "import",
        help="import recordings into a store: VPT (.mp4 + .jsonl), MineRL v0.4, or a Minari dataset",
        epilog="examples: worldsim data import --format vpt recordings/ --out data/minecraft --size 128 224\n"
        "          worldsim data import --format minari D4RL/door/human-v2 --out data/door",
    )
    imp.add_argument(
        "source",
        help="a folder of recordings (vpt, minerl) or a Minari dataset id or path (minari)",
    )
    imp.add_argument("--format", required=True, choices=["vpt", "minerl", "minari"])
    imp.add_argument(
        "--out", required=True, help="store directory or fsspec URL (created if missing)"
    )
    imp.add_argument(
        "--size", type=int, nargs=2, metavar=("H", "W"), default=None, help="resize frames to H W"
    )
    imp.add_argument(
        "--game",
        default=None,
        help="game name to record in the store (default: minecraft / the dataset's)",
    )
    imp.add_argument(
        "--data-path",
        default=None,
        help="Minari datasets root for --format minari (default: $MINARI_DATASETS_PATH or ~/.minari)",
    )
    imp.set_defaults(func=run_import)

    rel = dsub.add_parser(
        "relabel",
        help="copy a store with its labels brought to what its game records today",
        description="Writes a copy of STORE to --out whose per-frame labels are what "
        "`worldsim collect` records for its game today, derived from the stored frames and "
        "labels (Crafter: stores recorded before 2026-12-07 gain the fall_asleep counter, "
        "read off the sleeping view). STORE is left as it is.",
        epilog="example: worldsim data relabel data/crafter-build --out data/crafter-build-sleep",
    )
    rel.add_argument("store", help="store directory or fsspec URL")
    rel.add_argument("--out", required=True, help="the new store (must not exist)")
    rel.set_defaults(func=run_relabel)

    exp = dsub.add_parser(
        "export",
        help="export a store as a Minari dataset",
        epilog="example: worldsim data export data/crafter --dataset-id worldsim/crafter-sticky-v0",
    )
    exp.add_argument("store", help="store directory or fsspec URL")
    exp.add_argument(
        "--dataset-id", required=True, help="Minari dataset id, e.g. worldsim/crafter-sticky-v0"
    )
    exp.add_argument(
        "--data-path",
        default=None,
        help="Minari datasets root (default: $MINARI_DATASETS_PATH or ~/.minari)",
    )
    exp.set_defaults(func=run_export)


def run_info(args: argparse.Namespace) -> int:
    from worldsim.data import EpisodeStore
    from worldsim.data.summary import summarize

    s = summarize(EpisodeStore.open(args.store))
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"{s['path']} ({s['game']})", show_header=False)
    length = s["episode_length"]
    rows = [
        (
            "episodes",
            f"{s['episodes']}"
            + (f" (+{s['incomplete_episodes']} incomplete)" if s["incomplete_episodes"] else ""),
        ),
        ("frames", f"{s['frames']:,} ({s['transitions']:,} transitions)"),
        ("frame shape", "x".join(map(str, s["frame_shape"])) + f" at {s['fps']:g} fps"),
        ("episode length", f"min {length['min']}, mean {length['mean']:.1f}, max {length['max']}"),
        ("mean return", "-" if s["mean_return"] is None else f"{s['mean_return']:.2f}"),
        ("splits", ", ".join(f"{k} {v}" for k, v in s["splits"].items())),
        ("disk size", f"{s['disk_bytes'] / 2**20:.2f} MiB"),
        (
            "bytes/frame",
            f"{s['bytes_per_frame']:.0f} (raw {s['raw_bytes_per_frame']}, {s['raw_bytes_per_frame'] / max(s['bytes_per_frame'], 1):.1f}x)",
        ),
        ("action space", s["action_space"]),
        (
            "labels",
            (", ".join(s["labels"]["arrays"]) or "none")
            + f" ({s['labels']['episodes_labelled']} episodes)"
            + (f"; {s['labels']['missing']}" if "missing" in s["labels"] else ""),
        ),
        (
            "collected with",
            ", ".join(f"{k}={v}" for k, v in s["metadata"].items() if k != "action_names"),
        ),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)
    console.print(_histogram_table(s["action_histogram"], s["transitions"]))
    return 0


def _histogram_table(hist: dict, total: int):
    from rich.table import Table

    t = Table(title="actions")
    t.add_column("action")
    t.add_column("count / statistic", justify="right")
    t.add_column("share", justify="right")
    for k, v in hist.items():
        if isinstance(v, int):
            t.add_row(k, f"{v:,}", f"{100 * v / max(total, 1):.1f}%")
        else:
            t.add_row(k, json.dumps(v), "")
    return t


def run_check(args: argparse.Namespace) -> int:
    from worldsim.data.check import check_store

    report = check_store(args.store, repair=args.repair)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{report.path}: {report.episodes} complete episodes checked")
        for key, problem in sorted(report.problems.items()):
            print(f"  episode {key}: {problem}")
        if report.quarantined:
            print(f"moved {len(report.quarantined)} episodes to {report.path}/quarantine/")
        elif report.problems:
            print(f"{len(report.problems)} bad episodes: run again with --repair to set them aside")
        else:
            print("no problems found")
    return 0 if report.ok or report.quarantined else 1


def run_import(args: argparse.Namespace) -> int:
    size = tuple(args.size) if args.size else None
    if args.format == "minari":
        from worldsim.data.minari_io import import_minari

        n = import_minari(
            args.source, args.out, game=args.game, frame_size=size, data_path=args.data_path
        )
    else:
        from envs.minecraft import import_minecraft

        kwargs = {"game": args.game} if args.game else {}
        n = import_minecraft(
            args.source, args.out, format=args.format, size=size or (128, 224), **kwargs
        )
    print(f"imported {n} episodes into {args.out}")
    return 0


def run_relabel(args: argparse.Namespace) -> int:
    from envs.games import make_game
    from worldsim.data import EpisodeStore
    from worldsim.errors import StoreError

    src = EpisodeStore.open(args.store)
    if src.game != "crafter":
        raise StoreError(
            f"{args.store} holds {src.game!r}: only Crafter stores have labels to relabel"
        )
    from envs.crafter_env import relabel

    env = make_game("crafter")
    spec = env.unwrapped.label_spec
    env.close()
    dst = EpisodeStore.create(args.out, game=src.game, action_space=src.action_space,
                              observation_space=src.observation_space, fps=src.fps,
                              metadata=src.metadata, label_spec=spec)  # fmt: skip
    for i in range(len(src)):
        ep = src.episode(i)
        dst.append(ep.frames, ep.actions, ep.rewards, ep.terminated, ep.truncated, info=ep.info,
                   labels=relabel(np.asarray(ep.frames), ep.labels, spec))  # fmt: skip
    print(f"wrote {len(src)} episodes of {args.store} to {args.out} with today's labels")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from worldsim.data.minari_io import export_minari

    export_minari(args.store, args.dataset_id, data_path=args.data_path)
    print(f"exported {args.store} as Minari dataset {args.dataset_id}")
    return 0
