"""Pose memory: the reference frame a diffusion step starts from, found by the camera's pose.

Why: a first-person world returns to what it showed when the player returns to a pose (turn
360 degrees, walk out and back). A window of the last few frames cannot hold that (a full
turn in Minetest is 24 steps), and attention over a long window costs what this CPU does not
have. The model instead keeps every frame it has made with the pose it was made at (the
poses dead-reckoned from the actions by an odometry fit to the data by least squares, or read
from the data when training), and each new frame is predicted relative to the remembered frame nearest to the
new pose, turned to the new view direction by the exact rotation homography of a pinhole
camera with the game's field of view. At the pose of a remembered frame the reference is
that frame, so what was seen comes back as it was; the network is told the pose difference
that remains (WorldMem, Xiao et al. 2025, and Context-as-Memory, Yu et al. 2025, retrieve
past frames by pose for the same reason; here only one is retrieved, as the reference, so a
step costs no more than before).

Poses are [..., 5] float: x, y, z (world units), yaw (degrees, counter-clockwise seen from
above), pitch (degrees, positive looking down): Minetest's `labels/pose`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "POSE_DIM",
    "fit_odometry",
    "local_delta",
    "nearest",
    "odometry_features",
    "odometry_step",
    "pose_distance",
    "turn_view",
    "wrap_degrees",
]

POSE_DIM = 5


def wrap_degrees(a: Tensor) -> Tensor:
    """Angles in degrees wrapped to [-180, 180)."""
    return torch.remainder(a + 180.0, 360.0) - 180.0


def local_delta(ref: Tensor, pose: Tensor) -> Tensor:
    """Pose `pose` seen from pose `ref` ([..., 5] each) -> [..., 5]: the position difference in
    the reference's heading frame (forward, left, up; yaw 0 faces +z) and the wrapped
    differences of yaw and pitch. Zero when the poses are equal."""
    d = pose[..., :3] - ref[..., :3]
    yaw = torch.deg2rad(ref[..., 3])
    # heading (yaw ccw from +z, seen from above with x east): forward = (-sin, 0, cos)
    forward = -torch.sin(yaw) * d[..., 0] + torch.cos(yaw) * d[..., 2]
    left = -torch.cos(yaw) * d[..., 0] - torch.sin(yaw) * d[..., 2]
    turn = wrap_degrees(pose[..., 3:5] - ref[..., 3:5])
    return torch.cat([torch.stack([forward, left, d[..., 1]], -1), turn], -1)


def odometry_features(actions: Tensor) -> Tensor:
    """Encoded actions [..., A] -> the odometry's features [..., 1 + A + A(A+1)/2]: a constant,
    the actions and their pairwise products (walking sneaking is not walking plus sneaking)."""
    i, j = torch.triu_indices(actions.shape[-1], actions.shape[-1], device=actions.device)
    one = torch.ones_like(actions[..., :1])
    return torch.cat([one, actions, actions[..., i] * actions[..., j]], -1)


def fit_odometry(actions: Tensor, steps: Tensor) -> Tensor:
    """Least-squares weights [F, 5] mapping `odometry_features` of encoded actions [N, A] to the
    pose steps [N, 5] they took (`local_delta` of consecutive poses), height excepted (its
    column is zero: the rollout does not dead-reckon climbs and falls). The minimum-norm
    solution where features never vary (buttons never pressed)."""
    if len(actions) == 0:
        raise ValueError("no transitions to fit the odometry on")
    x = odometry_features(actions).double().cpu()
    y = steps.double().cpu().clone()
    y[:, 2] = 0.0
    weights = torch.linalg.lstsq(x, y, driver="gelsd").solution
    return weights.float()


def odometry_step(pose: Tensor, delta: Tensor) -> Tensor:
    """The pose reached from `pose` [..., 5] by a step `delta` [..., 5] given in the pose's own
    heading frame (as `local_delta` gives it): the inverse of `local_delta`."""
    yaw = torch.deg2rad(pose[..., 3])
    fwd, left, up = delta[..., 0], delta[..., 1], delta[..., 2]
    dx = -torch.sin(yaw) * fwd - torch.cos(yaw) * left
    dz = torch.cos(yaw) * fwd - torch.sin(yaw) * left
    angles = pose[..., 3:5] + delta[..., 3:5]
    angles = torch.stack(
        [torch.remainder(angles[..., 0], 360.0), angles[..., 1].clamp(-90, 90)], -1
    )
    return torch.cat(
        [torch.stack([pose[..., 0] + dx, pose[..., 1] + up, pose[..., 2] + dz], -1), angles], -1
    )


def pose_distance(a: Tensor, b: Tensor, degrees_per_unit: float) -> Tensor:
    """How far apart poses a and b [..., 5] are (broadcast): the horizontal distance in world
    units (x and z: height is left out, since the odometry does not dead-reckon climbs and
    falls) plus the turn of yaw and pitch in degrees divided by `degrees_per_unit`."""
    d = (a[..., 0:3:2] - b[..., 0:3:2]).norm(dim=-1)
    return d + wrap_degrees(a[..., 3:5] - b[..., 3:5]).abs().sum(-1) / degrees_per_unit


def nearest(
    memory: Tensor, valid: Tensor, pose: Tensor, degrees_per_unit: float
) -> tuple[Tensor, Tensor]:
    """The remembered pose nearest to `pose`.

    Distance: `pose_distance`. Ties go to the earlier memory slot: standing still, a
    rollout keeps returning the first frame made at its pose, not its own latest redraw of it
    (in real play the frames at one pose are the same frame, so training is indifferent).

    Args:
        memory: [B, M, 5] remembered poses, oldest first. valid: bool [B, M] slots in use.
        pose: [B, 5] the pose to find.

    Returns:
        (index [B] of the nearest valid slot, its distance [B]); rows with no valid slot get
        index 0 and distance inf.
    """
    dist = pose_distance(memory, pose[:, None], degrees_per_unit)  # [B, M]
    dist = torch.where(valid, dist, torch.full_like(dist, math.inf))
    index = torch.argmin(dist, dim=1)  # the first of the minima
    return index, dist.gather(1, index[:, None])[:, 0]


def turn_view(x: Tensor, turn: Tensor, fov: float) -> Tensor:
    """Frames x [N, c, h, w] seen from a camera turned by `turn` [N, 2] (yaw, pitch in degrees,
    the target's minus the frame's) at the same place: the exact rotation homography of a
    pinhole camera with vertical field of view `fov` degrees (square pixels). Pixels that
    come into view read 0. Rows with no turn are returned as they are, bit for bit."""
    N, _, h, w = x.shape
    if N == 0:
        return x
    moved = turn.abs().amax(-1) > 1e-6
    if not bool(moved.any()):
        return x
    dev = x.device
    f = (h / 2) / math.tan(math.radians(fov) / 2)
    v, u = torch.meshgrid(
        torch.arange(h, device=dev, dtype=torch.float32) + 0.5 - h / 2,
        torch.arange(w, device=dev, dtype=torch.float32) + 0.5 - w / 2,
        indexing="ij",
    )
    # each pixel's ray in the target camera: x right, y down, z ahead
    ray = torch.stack([u, v, torch.full_like(u, f)], -1).reshape(-1, 3)
    yaw, pitch = torch.deg2rad(turn[:, 0]), torch.deg2rad(turn[:, 1])
    # the target camera's ray in the frame's camera: pitch the ray down by the target's pitch
    # change (about x), then yaw it by the turn (about the vertical axis; yaw ccw = turning left)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cy_, sy_ = torch.cos(yaw), torch.sin(yaw)
    one, zero = torch.ones_like(cp), torch.zeros_like(cp)
    rx = torch.stack([one, zero, zero, zero, cp, sp, zero, -sp, cp], -1).view(N, 3, 3)
    ry = torch.stack([cy_, zero, -sy_, zero, one, zero, sy_, zero, cy_], -1).view(N, 3, 3)
    r = ry @ rx
    d = ray[None] @ r.transpose(1, 2)  # [N, hw, 3]
    z = d[..., 2].clamp(min=1e-6)
    px = f * d[..., 0] / z / (w / 2)  # normalised [-1, 1] (align_corners=False)
    py = f * d[..., 1] / z / (h / 2)
    behind = d[..., 2] <= 1e-6
    px = torch.where(behind, torch.full_like(px, 2.0), px)
    grid = torch.stack([px, py], -1).view(N, h, w, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where(moved[:, None, None, None], out, x)
