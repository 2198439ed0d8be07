"""The DeiT vision transformer: a ViT with a class token and an optional distillation token.

Follows Touvron et al. 2020 (arXiv 2012.12877): patch tokens, a learned class token and,
for the distilled variant, a learned distillation token placed right after it, each with its
own position embedding and its own linear head. Parameter names match timm's
``VisionTransformer`` / ``VisionTransformerDistilled`` so official DeiT checkpoints load with
``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear
from .pos_embed import resample_pos_embed

HEADS = ("cls", "dist", "avg")
"""Evaluation heads of a distilled model: class token, distillation token, their average."""

LAYER_NORM_EPS = 1e-6


def keep_tokens(x: torch.Tensor, num_prefix_tokens: int, keep: float) -> torch.Tensor:
    """A random ``keep`` fraction of each image's patch tokens; class/distillation tokens kept.

    Token dropping (as in MAE's encoder and FLIP): a ViT is a set model once
    the position embedding is added, so training on a random subset of the
    patches is the same model at a fraction of the cost per step. The subset
    is drawn per image from torch's global generator (as drop-path is), so a
    checkpointed RNG state replays it; the kept tokens stay in grid order.
    """
    patches = x.shape[1] - num_prefix_tokens
    kept = max(1, round(patches * keep))
    order = torch.rand(x.shape[0], patches, device=x.device).argsort(dim=1)
    index = order[:, :kept].sort(dim=1).values + num_prefix_tokens
    chosen = x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return torch.cat([x[:, :num_prefix_tokens], chosen], dim=1)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random subset of samples.

    Each sample's branch is dropped with probability ``rate`` and survivors are scaled by
    ``1 / (1 - rate)`` so the expectation is unchanged; identity in eval or at rate 0.
    """
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    """Module form of :func:`drop_path`, one per residual branch."""

    def __init__(self, rate: float = 0.0):
        """Store the drop rate of this branch."""
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply stochastic depth in training mode only."""
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        """Show the rate when printing the model."""
        return f"rate={self.rate:.3f}"


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping P×P patches and project each to D dimensions."""

    def __init__(
        self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, dynamic: bool = False
    ):
        """A stride-P convolution is a linear projection of each flattened patch.

        ``dynamic`` admits any image size the patch size divides, not only ``img_size``.
        """
        super().__init__()
        self.dynamic = dynamic
        if img_size % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide img_size {img_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``B × C × H × W`` → patch tokens ``B × N × D`` in row-major grid order."""
        h, w = x.shape[-2:]
        if self.dynamic and h % self.patch_size == 0 and w % self.patch_size == 0:
            pass
        elif (h, w) != (self.img_size, self.img_size):
            allowed = f"multiples of {self.patch_size}" if self.dynamic else f"{self.img_size}²"
            raise ValueError(
                f"expected {self.img_size}×{self.img_size} images ({allowed}), got {(h, w)}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and fused (SDPA) attention."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        """One ``dim → 3·dim`` projection for q, k, v (with bias) and an output projection."""
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = Linear(dim, dim * 3)
        self.attn_drop = attn_drop
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project tokens ``B × T × D`` to per-head q, k, v, each ``B × heads × T × head_dim``."""
        B, T, _ = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(q·kᵀ/√d)·v per head, heads concatenated and projected back to D."""
        B, T, D = x.shape
        q, k, v = self._qkv(x)
        drop = self.attn_drop if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, T, D)))

    @torch.no_grad()
    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention probabilities ``B × heads × T × T`` for (normalised) input tokens.

        Computed explicitly (the fused kernel never materialises them), for visualisation.
        """
        q, k, _ = self._qkv(x)
        return (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)


class Mlp(nn.Module):
    """The transformer's feed-forward network: Linear → GELU → Linear."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        """Expand to ``hidden_dim`` and project back to ``dim``."""
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise two-layer perceptron."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        """Build the two residual branches; ``drop_path`` is this block's stochastic depth."""
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the attention and MLP residual branches."""
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """DeiT: a ViT with a class token and, if ``distilled``, a distillation token.

    Tokens are ``[cls, (dist,) patch_1 … patch_N]`` plus a learned position embedding for every
    one of them. The class token feeds ``head``; the distillation token feeds ``head_dist``.

    Outputs (``forward``):
      * plain model: class logits, always;
      * distilled, training: the tuple ``(class logits, distillation logits)`` for the loss;
      * distilled, eval: the head named by ``eval_head`` (default ``"avg"``, the paper's
        prediction: the mean of both heads' logits; ``"cls"`` or ``"dist"`` for one head).
      ``forward(x, head=...)`` overrides this in either mode (``"both"`` gives the tuple).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        distilled: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dynamic_img_size: bool = False,
        token_keep: float = 1.0,
    ):
        """Build the model; defaults are DeiT-Ti at 224 px, patch 16, 1000 classes.

        ``drop_path_rate`` is the stochastic-depth rate of the last block; it rises linearly
        from 0 at the first block, as in DeiT. ``dynamic_img_size`` lets the model take
        other image sizes (multiples of the patch size), the patch-grid part of the position
        embedding resampled to the input's grid on the fly (used to train at low resolution
        first, when tokens are cheap). ``token_keep`` < 1 trains on a random subset of the
        patch tokens of each image (:func:`keep_tokens`); evaluation always sees every token,
        and the weights are the same as without it.
        """
        super().__init__()
        if not 0 < token_keep <= 1:
            raise ValueError(f"token_keep must be in (0, 1], got {token_keep}")
        self.token_keep = token_keep
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.distilled = distilled
        self.num_prefix_tokens = 2 if distilled else 1
        self._eval_head = "avg" if distilled else "cls"

        self.patch_embed = PatchEmbed(
            img_size, patch_size, in_chans, embed_dim, dynamic=dynamic_img_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        num_tokens = self.num_prefix_tokens + self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)

        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(
            *(
                Block(embed_dim, num_heads, mlp_ratio, drop_rate, attn_drop_rate, rate)
                for rate in rates
            )
        )
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head = Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        if distilled:
            self.head_dist = Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """DeiT's initialisation: truncated normal (std .02) for tokens, position embedding
        and linear weights; zero biases; LayerNorm weight one, bias zero.

        As in timm/DeiT the truncation bounds are ±2 (absolute, i.e. ±100 std), and the
        patch-embedding convolution keeps PyTorch's default init.
        """
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters that DeiT trains without weight decay (besides norms, biases)."""
        return {"pos_embed", "cls_token", "dist_token"}

    @property
    def eval_head(self) -> str:
        """Which head ``forward`` returns in eval mode: ``"cls"``, ``"dist"`` or ``"avg"``."""
        return self._eval_head

    @eval_head.setter
    def eval_head(self, head: str) -> None:
        self._eval_head = self._check_head(head, allow_both=False)

    def _check_head(self, head: str, allow_both: bool = True) -> str:
        """Validate a head name against this model (plain models only have ``"cls"``)."""
        allowed = (*HEADS, "both") if allow_both else HEADS
        if head not in allowed:
            raise ValueError(f"unknown head {head!r}; choose one of {allowed}")
        if not self.distilled and head != "cls":
            raise ValueError(
                f"head {head!r} needs a distillation token; this model has only the class head"
            )
        return head

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images → ``[cls, (dist,) patches]`` tokens with position embeddings added."""
        patch = self.patch_embed.patch_size
        grid = (x.shape[-2] // patch, x.shape[-1] // patch)
        x = self.patch_embed(x)
        prefix = [self.cls_token, self.dist_token] if self.distilled else [self.cls_token]
        prefix = [t.expand(x.shape[0], -1, -1) for t in prefix]
        pos_embed = resample_pos_embed(
            self.pos_embed, grid, self.num_prefix_tokens, self.patch_embed.grid_size
        )
        x = torch.cat([*prefix, x], dim=1) + pos_embed
        if self.training and self.token_keep < 1:
            x = keep_tokens(x, self.num_prefix_tokens, self.token_keep)
        return self.pos_drop(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``B × C × H × W`` → final-normalised tokens ``B × (prefix + N) × D``.

        Token 0 is the class token, token 1 the distillation token (if any), then the patches
        in row-major order; useful for features and attention visualisation.
        """
        return self.norm(self.blocks(self._tokens(x)))

    def forward_head(self, x: torch.Tensor, head: str | None = None):
        """Tokens from :meth:`forward_features` → logits, selecting the head as ``forward``."""
        if head is not None:
            self._check_head(head)
        logits = self.head(x[:, 0])
        if not self.distilled:
            return logits
        logits_dist = self.head_dist(x[:, 1])
        if head is None:
            head = "both" if self.training else self._eval_head
        if head == "both":
            return logits, logits_dist
        if head == "cls":
            return logits
        if head == "dist":
            return logits_dist
        return (logits + logits_dist) / 2

    def forward(self, x: torch.Tensor, head: str | None = None):
        """Images → logits: see the class docstring for what each mode and ``head`` return."""
        return self.forward_head(self.forward_features(x), head)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention probabilities of every block, each ``B × heads × T × T``, for images x.

        Row 0 (1) of a map is where the class (distillation) token attends; for visualisation.
        """
        maps = []
        x = self._tokens(x)
        for block in self.blocks:
            maps.append(block.attn.attention_map(block.norm1(x)))
            x = block(x)
        return maps
