"""A PyTorch DINO ViT with facebookresearch/dino's attribute names, and the Splice descriptor extraction.

Written from docs/weight_formats.md §5.2-§5.4: patch conv with bias, CLS token, position table interpolated with
PyTorch bicubic at DINO's scale factor (n + 0.1) / grid unless the image is square with the pretrained patch count,
pre-LN blocks with a fused qkv projection, exact GELU, LayerNorm eps 1e-6. `splice_descriptors` reads the block
outputs and the qkv output through forward hooks, as Splice's extractor does, one image at a time.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

HEAD_DIM = 64
LAYER_NORM_EPS = 1e-6


class Attention(nn.Module):

  def __init__(self, width: int, num_heads: int):
    super().__init__()
    self.num_heads = num_heads
    self.qkv = nn.Linear(width, 3 * width)
    self.proj = nn.Linear(width, width)

  def forward(self, x):
    batch, tokens, width = x.shape
    head_dim = width // self.num_heads
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
    query, key, value = qkv[0], qkv[1], qkv[2]
    weights = (query @ key.transpose(-2, -1) / math.sqrt(head_dim)).softmax(dim=-1)
    return self.proj((weights @ value).transpose(1, 2).reshape(batch, tokens, width))


class Mlp(nn.Module):

  def __init__(self, width: int, hidden: int):
    super().__init__()
    self.fc1 = nn.Linear(width, hidden)
    self.act = nn.GELU()
    self.fc2 = nn.Linear(hidden, width)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):

  def __init__(self, width: int, num_heads: int, mlp_dim: int):
    super().__init__()
    self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
    self.attn = Attention(width, num_heads)
    self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
    self.mlp = Mlp(width, mlp_dim)

  def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):

  def __init__(self, patch_size: int, width: int):
    super().__init__()
    self.proj = nn.Conv2d(3, width, patch_size, stride=patch_size)

  def forward(self, images):
    return self.proj(images).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
  """DINO's ViT backbone (no head): `forward` returns the normed CLS token.

  DINO's own models have width // 64 heads (the default); `num_heads` also covers the Hugging Face test fixture.
  """

  def __init__(self, patch_size: int, width: int, depth: int, mlp_dim: int, image_size: int,
               num_heads: int | None = None):
    super().__init__()
    self.patch_size = patch_size
    self.grid = image_size // patch_size
    self.patch_embed = PatchEmbed(patch_size, width)
    self.cls_token = nn.Parameter(0.1 * torch.randn(1, 1, width))
    self.pos_embed = nn.Parameter(0.1 * torch.randn(1, self.grid**2 + 1, width))
    self.blocks = nn.ModuleList([Block(width, num_heads or width // HEAD_DIM, mlp_dim) for _ in range(depth)])
    self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

  def position_table(self, height: int, width: int):
    """[1, 1 + rows * cols, width] for an image of height x width pixels."""
    rows, cols = height // self.patch_size, width // self.patch_size
    if rows * cols == self.grid**2 and height == width:
      return self.pos_embed
    channels = self.pos_embed.shape[-1]
    table = self.pos_embed[:, 1:].reshape(1, self.grid, self.grid, channels).permute(0, 3, 1, 2)
    table = F.interpolate(
        table, scale_factor=((rows + 0.1) / self.grid, (cols + 0.1) / self.grid), mode="bicubic"
    )
    table = table.permute(0, 2, 3, 1).reshape(1, rows * cols, channels)
    return torch.cat([self.pos_embed[:, :1], table], dim=1)

  def forward(self, images):
    """images: [batch, 3, height, width] -> [batch, width]."""
    patches = self.patch_embed(images)
    x = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
    x = x + self.position_table(images.shape[2], images.shape[3])
    for block in self.blocks:
      x = block(x)
    return self.norm(x)[:, 0]


def cosine_self_similarity(x, eps: float = 1e-8):
  """x: [tokens, width] -> [tokens, tokens] of <x_i, x_j> / max(|x_i| |x_j|, eps)."""
  norms = x.norm(dim=-1, keepdim=True)
  return (x @ x.T) / torch.clamp(norms @ norms.T, min=eps)


def splice_descriptors(model: VisionTransformer, images, key_layer: int, cls_layer: int):
  """The Splice structure / appearance descriptors of normalised images, one image at a time.

  Args:
    images: [batch, 3, height, width], already resized and ImageNet-normalised.

  Returns:
    (self_similarity [batch, tokens, tokens] of the keys of block key_layer, cls [batch, width] of the output of
    block cls_layer before the final norm).
  """
  captured = {}
  hooks = [
      model.blocks[cls_layer].register_forward_hook(lambda module, inputs, out: captured.update(block=out)),
      model.blocks[key_layer].attn.qkv.register_forward_hook(lambda module, inputs, out: captured.update(qkv=out)),
  ]
  similarities, classes = [], []
  try:
    for image in images:
      model(image[None])
      qkv = captured["qkv"][0]
      tokens = qkv.shape[0]
      heads = model.blocks[key_layer].attn.num_heads
      keys = qkv.reshape(tokens, 3, heads, -1).permute(1, 2, 0, 3)[1]
      similarities.append(cosine_self_similarity(keys.transpose(0, 1).reshape(tokens, -1)))
      classes.append(captured["block"][0, 0])
  finally:
    for hook in hooks:
      hook.remove()
  return torch.stack(similarities), torch.stack(classes)
