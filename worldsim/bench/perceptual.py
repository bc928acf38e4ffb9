"""LPIPS (AlexNet) and FVD's I3D feature network, loaded only from local weight files.

Nothing here downloads anything. Without the weight files the metric is skipped: the loaders
raise `MetricUnavailable`, whose message says which file to get and which flag takes it.

* LPIPS v0.1 (Zhang et al. 2018) with the AlexNet trunk, re-implemented in plain torch (the
  `lpips` package needs torchvision). It needs two standard files, given together or merged:
  the linear calibration layers `alex.pth` (in the lpips repository, `lpips/weights/v0.1/`) and
  torchvision's ImageNet AlexNet `alexnet-owt-7be5be79.pth`. A saved `lpips.LPIPS` state dict
  holds both and works alone.
* FVD uses the Kinetics-400 I3D TorchScript file `i3d_torchscript.pt` of StyleGAN-V's
  `fvd2048_16f` metric, called as StyleGAN-V calls it: uint8-valued [B, 3, T, H, W] clips,
  `rescale=True, resize=True, return_features=True`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from worldsim.errors import WorldsimError

__all__ = ["LPIPS", "I3DFeatures", "MetricUnavailable", "load_i3d", "load_lpips"]

LPIPS_HELP = (
    "pass --lpips-weights with the LPIPS v0.1 linear layers (alex.pth from the lpips repository) "
    "and torchvision's AlexNet weights (alexnet-owt-7be5be79.pth), or one file holding both"
)
FVD_HELP = (
    "pass --fvd-weights with StyleGAN-V's I3D file i3d_torchscript.pt "
    "(the Kinetics-400 I3D used by its fvd2048_16f metric)"
)


class MetricUnavailable(WorldsimError, RuntimeError):
    """A metric's weights are missing or unusable; the benchmark skips the metric."""


class LPIPS(nn.Module):
    """LPIPS v0.1, AlexNet trunk: a perceptual distance between frames (0 for identical ones)."""

    channels = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        # torchvision's AlexNet `features` (indices kept so its state dict loads directly).
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(),  # 0, 1 -> tap 1
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),  # 2-4 -> tap 2
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),  # 5-7 -> tap 3
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),  # 8, 9 -> tap 4
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),  # 10, 11 -> tap 5
        )
        self.taps = (1, 4, 7, 9, 11)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.channels)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def _taps(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, preds: Tensor, target: Tensor) -> Tensor:
        """preds, target uint8 [B, H, W, 3] -> distance [B]."""
        a, b = (
            (x.permute(0, 3, 1, 2).float().to(self.shift.device) / 127.5 - 1 - self.shift)
            / self.scale
            for x in (preds, target)
        )  # [B, 3, H, W], the input scaling LPIPS v0.1 applies to [-1, 1] images
        dist = 0.0
        for lin, fa, fb in zip(self.lins, self._taps(a), self._taps(b)):
            dist = dist + lin((fa - fb) ** 2).mean(dim=(2, 3))  # [B, 1]
        return dist[:, 0]

    def distance(self, preds: np.ndarray, target: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Per-frame LPIPS of uint8 frames [..., H, W, 3] -> float64 [...]."""
        lead = preds.shape[:-3]
        p = torch.as_tensor(preds.reshape(-1, *preds.shape[-3:]))
        t = torch.as_tensor(target.reshape(-1, *target.shape[-3:]))
        out = [
            self(p[i : i + batch_size], t[i : i + batch_size]) for i in range(0, len(p), batch_size)
        ]
        return torch.cat(out).double().cpu().numpy().reshape(lead)


def _read_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as e:
        raise MetricUnavailable(f"could not read LPIPS weights {path}: {e}") from None
    return state.get("state_dict", state) if isinstance(state, dict) else {}


def load_lpips(paths: str | Path | Sequence[str | Path] | None, device: str = "cpu") -> LPIPS:
    """LPIPS with weights from local files (a directory: every .pth/.pt/.safetensors in it).

    Accepted keys: torchvision AlexNet (`features.N.*`), the lpips package's `net.sliceK.N.*`
    and `linK.model.1.weight` (or `linK.model.0.weight`, saved without dropout).

    Raises:
        MetricUnavailable: no paths, missing files, or weights that do not cover the network.
    """
    if not paths:
        raise MetricUnavailable(f"LPIPS skipped: no weights given; {LPIPS_HELP}")
    files: list[Path] = []
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix in (".pth", ".pt", ".safetensors"))
        elif p.is_file():
            files.append(p)
        else:
            raise MetricUnavailable(f"LPIPS skipped: {p} does not exist; {LPIPS_HELP}")
    model = LPIPS()
    mapped: dict[str, Tensor] = {}
    for f in files:
        for key, value in _read_state(f).items():
            if m := re.fullmatch(r"(?:net\.slice\d\.|features\.)(\d+)\.(weight|bias)", key):
                mapped[f"features.{m[1]}.{m[2]}"] = value
            elif m := re.fullmatch(r"lin(\d)\.model\.[01]\.weight", key):
                mapped[f"lins.{m[1]}.weight"] = value
    expected = {k for k in model.state_dict() if k not in ("shift", "scale")}
    missing = sorted(expected - set(mapped))
    if missing:
        raise MetricUnavailable(
            f"LPIPS skipped: the weights in {[str(f) for f in files]} lack {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''}; {LPIPS_HELP}"
        )
    try:
        model.load_state_dict(mapped, strict=False)
    except RuntimeError as e:
        raise MetricUnavailable(f"LPIPS skipped: weights do not fit AlexNet-LPIPS ({e})") from None
    return model.to(device)


class I3DFeatures:
    """FVD features of uint8 clips [B, T, H, W, 3] from StyleGAN-V's I3D TorchScript file."""

    def __init__(self, detector: torch.jit.ScriptModule, device: str = "cpu") -> None:
        self.detector, self.device = detector, device

    @torch.no_grad()
    def __call__(self, clips: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """clips uint8 [B, T, H, W, 3] (T = 16 for fvd2048_16f) -> float64 [B, F]."""
        out = []
        for i in range(0, len(clips), batch_size):
            x = torch.as_tensor(np.asarray(clips[i : i + batch_size])).to(self.device)
            x = x.permute(0, 4, 1, 2, 3).float()  # [B, 3, T, H, W], values 0..255
            feats = self.detector(x, rescale=True, resize=True, return_features=True)
            out.append(feats.double().cpu().reshape(len(x), -1))
        return torch.cat(out).numpy()


def load_i3d(path: str | Path | None, device: str = "cpu") -> I3DFeatures:
    """The I3D feature network from a local TorchScript file.

    Raises:
        MetricUnavailable: no path, a missing file, or a file TorchScript cannot load.
    """
    if not path:
        raise MetricUnavailable(f"FVD skipped: no I3D weights given; {FVD_HELP}")
    if not Path(path).is_file():
        raise MetricUnavailable(f"FVD skipped: {path} does not exist; {FVD_HELP}")
    try:
        with (
            warnings.catch_warnings()
        ):  # TorchScript is deprecated, but it is the format of this file
            warnings.simplefilter("ignore", DeprecationWarning)
            detector = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        raise MetricUnavailable(
            f"FVD skipped: {path} is not a TorchScript I3D ({e}); {FVD_HELP}"
        ) from None
    return I3DFeatures(detector, device)
