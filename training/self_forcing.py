"""Self forcing for the tile world model: train a step on the dream's own frame and memory.

Teacher-forced, the tile net only ever reads real frames, yet a rollout reads its own. A
self-forced batch (`TileDataModule(unroll=...)`) brings real context frames and the k real
transitions after them; `dream_batch` dreams those k steps with the net as it is (no grad,
the release's sampler), forcing the real view shifts and events so that the dream's view
stays on the real one, and puts the dream's last frame, the frame before it and the
dream's memory in place of the real ones. The target stays the real next frame, but only on
the tokens where the dream still agrees with the real game (`loss_mask`): a tile in view
whose shifted tile is the real one (and, where the real tile changes, whose 3x3
neighbourhood is), or a revealed tile whose memory is the real one. Elsewhere the dream has
parted from the game, and the real tile is no answer it could know. The fixed rows (a HUD)
stay the real ones and are always trained.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from worldsim.model.tile_config import TileSampler
from worldsim.model.tile_net import TileWorldNet
from worldsim.model.tile_rollout import Given, TileRollout
from worldsim.model.tiles import NO_CODE
from worldsim.spaces import tree_index

__all__ = ["dream_batch"]


@torch.no_grad()
def dream_batch(net: TileWorldNet, sampler: TileSampler, batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with its transitions' last frames dreamed (see the module docstring): pix,
    code, prev_code, prev_shift, mem_code and mem_age are the dream's, and `loss_mask` bool
    [B, N] marks the tokens trained. A batch without dream steps comes back as it is."""
    k = int(batch.get("dream_steps", 0))
    if not k:
        return batch
    dev, K = net.device, net.config.codebook_size
    rollout = TileRollout(net, sampler=sampler)
    codes = batch["past_code"].to(dev)
    c = codes.shape[1]
    shifts = batch["past_shift"].long().to(dev)
    events = batch["past_events"].bool().to(dev)
    state = rollout.start_tokens(batch["past_pix"].to(dev), codes, shifts[:, : c - 1])
    for i in range(c - 1, c - 1 + k):
        action = net.encode_actions(tree_index(batch["past_action"], (slice(None), i)))
        told = Given(shift=shifts[:, i], events=events[:, i])
        rollout.next(state, action.to(dev)[:, None], given=[told])
    shift = batch["shift"].long().to(dev)
    state.canvas.move(rollout.disp[shift])
    mem_code, mem_age = state.canvas.read()

    # Where the dream still shows the real game.
    real_sh = net.shifted(batch["pix"].to(dev), shift, 0)
    dream_sh = net.shifted(state.pix, shift, 0)
    known = net.shifted(state.code, shift, K) != K
    agree = net.same_tile(dream_sh, real_sh) | ~known  # revealed: judged by memory below
    rows, cols = net.config.grid
    around = -F.max_pool2d(-agree.float().view(-1, 1, rows, cols), 3, 1, 1)
    around = around.view_as(agree) > 0.5
    changes = ~net.same_tile(real_sh, batch["pix_next"].to(dev))
    in_view = known & agree & (~changes | around)
    real_mem = batch["mem_code"].long().to(dev)
    none = (mem_code == NO_CODE) & (real_mem == NO_CODE)
    both = (mem_code != NO_CODE) & (real_mem != NO_CODE)
    same_mem = net.same_tile(
        net.codebook[mem_code.clamp(min=0)], net.codebook[real_mem.clamp(min=0)]
    )
    recalled = torch.zeros_like(known)
    recalled[:, : net.moving] = none | (both & same_mem)
    # The fixed rows (a HUD) stay teacher-forced and always trained: they do not scroll, so
    # the walk cannot part them from the game, and a dreamed HUD agrees with the real one
    # mostly where nothing changed, which would teach the net never to count up.
    hud = torch.zeros_like(known)
    hud[:, net.moving :] = True
    return {
        **batch,
        "pix": torch.where(hud[..., None], batch["pix"].to(dev), state.pix),
        "code": torch.where(hud, batch["code"].long().to(dev), state.code),
        "prev_code": torch.where(hud, batch["prev_code"].long().to(dev), state.prev_code),
        "prev_shift": state.prev_shift,
        "mem_code": mem_code,
        "mem_age": mem_age,
        "loss_mask": in_view | (~known & recalled) | hud,
    }
