"""`worldsim bench train-idm | train-tiles`: train the benchmark's own models on real play.

    worldsim bench train-idm --data data/crafter --out idm/crafter.safetensors
    worldsim bench train-tiles --data data/crafter --out bench/tiles-crafter.safetensors

The inverse-dynamics model and the tile model score rollouts in `worldsim bench fidelity`.
"""

from __future__ import annotations

import argparse

from worldsim.cli.argtypes import device, positive_float, positive_int, probability

__all__ = ["auto_device", "register_training"]


def register_training(bsub: argparse._SubParsersAction) -> None:
    """Add `train-idm` and `train-tiles` to the `worldsim bench` subcommands."""
    t = bsub.add_parser(
        "train-idm",
        help="train the inverse-dynamics model on real transitions of a store's train split",
        epilog="example: worldsim bench train-idm --data data/crafter --out idm/crafter.safetensors",
    )
    t.add_argument("--data", required=True, help="episode store (its train split is used)")
    t.add_argument("--out", required=True, help="output .safetensors file")
    t.add_argument(
        "--steps", type=positive_int, default=3000, help="optimisation steps (default: 3000)"
    )
    t.add_argument(
        "--batch-size", type=positive_int, default=64, help="transitions per step (default: 64)"
    )
    t.add_argument(
        "--lr", type=positive_float, default=1e-3, help="peak learning rate (default: 1e-3)"
    )
    t.add_argument(
        "--width",
        type=positive_int,
        default=32,
        help="channels of the first conv layer (default: 32)",
    )
    t.add_argument(
        "--max-gb", type=positive_float, default=1.0, help="frames held in memory, GB (default: 1)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", type=device, default=None, help="default: cuda if available")
    t.set_defaults(func=run_train_idm)

    tt = bsub.add_parser(
        "train-tiles",
        help="train the tile model (tile classes and a bank of real tiles) on labelled real frames",
        description="Trains on the store's train split and reports accuracy on its held-out "
        "episodes. Crafter stores carry tile labels; other games get the realism bank only "
        "(--tile H W).",
        epilog="example: worldsim bench train-tiles --data data/crafter --out bench/tiles-crafter.safetensors",
    )
    tt.add_argument("--data", required=True, help="episode store of real play")
    tt.add_argument("--out", required=True, help="output .safetensors file")
    tt.add_argument(
        "--steps", type=positive_int, default=3000, help="optimisation steps (default: 3000)"
    )
    tt.add_argument(
        "--batch-size", type=positive_int, default=512, help="tiles per step (default: 512)"
    )
    tt.add_argument(
        "--lr", type=positive_float, default=2e-3, help="peak learning rate (default: 2e-3)"
    )
    tt.add_argument(
        "--bank-size", type=positive_int, default=20000, help="real tiles kept (default: 20000)"
    )
    tt.add_argument(
        "--quantile",
        type=probability,
        default=0.99,
        help="share of real held-out tiles the realism threshold admits (default: 0.99)",
    )
    tt.add_argument(
        "--tile", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
        help="tile size for stores without labels (a realism bank only)",
    )  # fmt: skip
    tt.add_argument(
        "--max-gb", type=positive_float, default=1.0, help="frames held in memory, GB (default: 1)"
    )
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--device", type=device, default=None, help="default: cuda if available")
    tt.set_defaults(func=run_train_tiles)


def auto_device(name: str | None) -> str:
    """A --device value, None or \"auto\" meaning cuda when there is one, else cpu."""
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def run_train_tiles(args: argparse.Namespace) -> int:
    from worldsim.bench.tiles import save_tile_model
    from worldsim.bench.tiles_training import train_tile_model
    from worldsim.data import EpisodeStore

    model = train_tile_model(
        EpisodeStore.open(args.data),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        bank_size=args.bank_size,
        quantile=args.quantile,
        tile=tuple(args.tile) if args.tile else None,
        max_bytes=args.max_gb * 1e9,
        seed=args.seed,
        device=auto_device(args.device),
        log=print,
    )
    save_tile_model(args.out, model)
    m = model.metrics
    if "held_out" in m:
        h = m["held_out"]
        print(
            f"held-out tile accuracy {h['accuracy']:.4f}, object tiles {h['object_accuracy']:.4f} "
            f"({h['tiles']:,} map tiles of {m['held_out_episodes']} episodes)"
        )
        worst = sorted(h["per_class"].items(), key=lambda kv: kv[1]["accuracy"])[:3]
        print("weakest classes: " + ", ".join(f"{k} {v['accuracy']:.3f} ({v['tiles']} tiles)"
                                              for k, v in worst))  # fmt: skip
    r = m["realism"]
    print(
        f"realism bank: {r['bank_tiles']:,} real tiles; threshold {r['threshold_rms']:.2f} RMS "
        f"admits {r['held_out_share_real']:.4f} of other held-out real tiles"
    )
    print(f"wrote {args.out}")
    return 0


def run_train_idm(args: argparse.Namespace) -> int:
    from worldsim.bench.idm_training import train_idm_on_store
    from worldsim.data import EpisodeStore

    metrics = train_idm_on_store(
        EpisodeStore.open(args.data),
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        width=args.width,
        max_bytes=args.max_gb * 1e9,
        seed=args.seed,
        device=auto_device(args.device),
    )
    for name in ("train", "held_out"):
        if name in metrics:
            m = metrics[name]
            scores = ", ".join(
                f"{k} {m[k]:.3f}" for k in ("accuracy", "f1", "box_mae") if m[k] is not None
            )
            print(f"{name}: {scores} ({m['n']} transitions)")
    print(f"wrote {args.out}")
    return 0
