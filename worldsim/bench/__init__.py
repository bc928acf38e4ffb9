"""The rollout-fidelity benchmark: metrics, inverse-dynamics model, protocol and reports.

`worldsim bench fidelity` runs it on a checkpoint and an episode store; from Python,
`evaluate_rollouts(world_model, frames, actions, ...)` scores any recorded clips and
`write_report(out_dir, result, ...)` writes report.json / report.md / plots / gallery.
"""

from worldsim.bench.fidelity import FidelityResult, evaluate_rollouts
from worldsim.bench.metrics import frechet_distance, moving_mask, psnr, ssim
from worldsim.bench.report import write_report

__all__ = [
    "FidelityResult",
    "evaluate_rollouts",
    "frechet_distance",
    "moving_mask",
    "psnr",
    "ssim",
    "write_report",
]
