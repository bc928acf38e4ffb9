"""The spacetime DiT backbone: conv stem, blocks of spatial + causal temporal attention, decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldsim.model.config import ModelConfig
from worldsim.model.kv_cache import KVCache
from worldsim.model.motion import MotionHead
from worldsim.model.rope import apply_rope, rope_1d, rope_2d

__all__ = ["DiT", "modulate"]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x [B, T, N, D] scaled and shifted per frame by shift/scale [B, T, D]."""
    return torch.addcmul(shift.unsqueeze(2), x, 1 + scale.unsqueeze(2))


def gated(x: Tensor, gate: Tensor, h: Tensor) -> Tensor:
    """Residual update x + gate * h with gate [B, T, D] per frame (adaLN-Zero)."""
    return torch.addcmul(x, gate.unsqueeze(2), h)


class RMSNorm(nn.RMSNorm):
    """RMSNorm whose weight follows the input dtype, so bf16 autocast keeps the fused kernel."""

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


class Attention(nn.Module):
    """Multi-head self-attention over the last-but-one axis with rotary positions (SDPA)."""

    def __init__(self, dim: int, heads: int, qk_norm: bool) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()

    def qkv_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [S, L, D] -> q, k, v [S, heads, L, head_dim] (q, k normalised, not rotated)."""
        S, L, _ = x.shape
        q, k, v = self.qkv(x).view(S, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.q_norm(q), self.k_norm(k), v

    def out(self, y: Tensor) -> Tensor:
        """y [S, heads, L, head_dim] -> [S, L, D]."""
        S, _, L, _ = y.shape
        return self.proj(y.transpose(1, 2).reshape(S, L, -1))


class Block(nn.Module):
    """Spatial attention (within a frame), causal temporal attention (per token position,
    across frames) and an MLP, each with adaLN-Zero modulation from the frame's condition."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.spatial = Attention(d, config.heads, config.qk_norm)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.temporal = Attention(d, config.heads, config.qk_norm)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * config.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d)
        )
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 9 * d))

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        rope_s: Tensor,
        rope_t: Tensor,
        cache: KVCache | None,
        layer: int,
    ) -> Tensor:
        """x [B, T, N, D], cond [B, T, D] -> [B, T, N, D]; `cache` holds earlier frames' keys."""
        B, T, N, D = x.shape
        mods = self.ada(cond).chunk(9, dim=-1)  # 9 x [B, T, D]
        # Spatial attention: tokens of one frame attend to each other.
        h = modulate(self.norm1(x), mods[0], mods[1]).reshape(B * T, N, D)
        q, k, v = self.spatial.qkv_heads(h)  # [B*T, heads, N, hd]
        q, k = apply_rope(q, rope_s), apply_rope(k, rope_s)
        h = self.spatial.out(F.scaled_dot_product_attention(q, k, v)).view(B, T, N, D)
        x = gated(x, mods[2], h)
        # Temporal attention: each token position attends to itself in this and earlier frames.
        h = modulate(self.norm2(x), mods[3], mods[4]).transpose(1, 2).reshape(B * N, T, D)
        q, k, v = self.temporal.qkv_heads(h)  # [B*N, heads, T, hd]
        past = 0
        if cache is not None:
            k_new, v_new = k, v
            k, v = cache.extend(layer, k, v)  # [B*N, heads, Tc + T, hd], unrotated keys
            cache.stage(layer, k_new, v_new)
            past = k.shape[2] - T
        q = apply_rope(q, rope_t[past : past + T])
        k = apply_rope(k, rope_t[: past + T])
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        elif T == 1:
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # new frames see all cached frames and, causally, each other
            i = torch.arange(T, device=x.device)[:, None]
            j = torch.arange(past + T, device=x.device)[None, :]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=j <= i + past)
        h = self.temporal.out(y).view(B, N, T, D).transpose(1, 2)
        x = gated(x, mods[5], h)
        # MLP.
        x = gated(x, mods[8], self.mlp(modulate(self.norm3(x), mods[6], mods[7])))
        return x


class DiT(nn.Module):
    """Backbone F: per-frame input planes and conditions -> per-frame output planes + features.

    Input planes [B, T, in_channels, h, w] (zero-padded to whole patches) are embedded
    by a conv stem and a strided patch conv into tokens [B, T, N, D]; the decoder maps tokens
    back to planes, with a full-resolution skip from the stem so fine detail need not pass
    through the tokens.
    """

    def __init__(self, config: ModelConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.config = config
        p, d, sc = config.patch_size, config.dim, config.stem_channels
        if sc > 0:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, sc, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(sc, sc, 3, padding=1),
                nn.SiLU(),
            )
            self.patch = nn.Conv2d(sc, d, p, stride=p)
            unpatch_channels = sc
            self.decoder = nn.Sequential(
                nn.Conv2d(2 * sc, sc, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(sc, out_channels, 3, padding=1),
            )
        else:
            self.stem, self.decoder = None, None
            self.patch = nn.Conv2d(in_channels, d, p, stride=p)
            unpatch_channels = out_channels
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.unpatch = nn.Linear(d, p * p * unpatch_channels)
        # Per-token kernels that move the previous frame (None: motion compensation off).
        self.motion = MotionHead(d, config.motion_radius) if config.motion_radius else None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears; adaLN modulations and the last output layer zeroed (adaLN-Zero),
        so a fresh network outputs F = 0 and every block starts as the identity."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        nn.init.zeros_(self.final_ada[-1].weight)
        nn.init.zeros_(self.final_ada[-1].bias)
        last = self.decoder[-1] if self.decoder is not None else self.unpatch
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        if self.motion is not None:
            self.motion.reset_parameters()  # identity kernels: the reference starts unmoved

    def forward(
        self,
        planes: Tensor,
        cond: Tensor,
        cache: KVCache | None = None,
        motion_temperature: float = 1.0,
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
        """Run the backbone.

        Args:
            planes: [B, T, C_in, h, w] input planes of T new frames.
            cond: [B, T, D] per-frame condition (noise level + action embedding).
            cache: keys/values of earlier frames; the new frames' keys/values are staged in
                it (commit with `cache.commit()`) so they can be appended after sampling.
            motion_temperature: of the motion kernels' taps (1: as trained).

        Returns:
            out [B, T, C_out, h, w], per-frame features [B, T, D] (mean of final tokens) and
            per-token motion taps (ky, kx), each [B, T, N, 2r + 1] (None when motion_radius is 0).
        """
        B, T, _, h, w = planes.shape
        p = self.config.patch_size
        rows, cols = -(-h // p), -(-w // p)
        x = planes.reshape(B * T, *planes.shape[2:])  # [B*T, C_in, h, w]
        if (rows * p, cols * p) != (h, w):  # zero-pad bottom/right to whole patches
            x = F.pad(x, (0, cols * p - w, 0, rows * p - h))
        skip = None
        if self.stem is not None:
            x = skip = self.stem(x)  # [B*T, sc, h, w]
        x = self.patch(x).flatten(2).transpose(1, 2).view(B, T, rows * cols, -1)  # [B, T, N, D]
        hd = self.config.dim // self.config.heads
        rope_s = rope_2d(rows, cols, hd, x.device)
        past = 0 if cache is None else cache.frames
        rope_t = rope_1d(past + T, hd, x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, cond, rope_s, rope_t, cache, i)
        x = self.final_norm(x)  # [B, T, N, D]
        features = x.mean(dim=2)  # [B, T, D]
        shift, scale = self.final_ada(cond).chunk(2, dim=-1)
        x = modulate(x, shift, scale)  # [B, T, N, D]
        kernels = (  # 2 x [B, T, N, 2r + 1]
            None if self.motion is None else self.motion(x, motion_temperature)
        )
        x = self.unpatch(x)  # [B, T, N, p*p*c]
        x = x.view(B * T, rows, cols, -1, p, p).permute(0, 3, 1, 4, 2, 5)
        x = x.reshape(B * T, -1, rows * p, cols * p)
        if self.decoder is not None:
            x = self.decoder(torch.cat([x, skip], dim=1))
        x = x[..., :h, :w]  # [B*T, C_out, h, w]
        return x.view(B, T, *x.shape[1:]), features, kernels
