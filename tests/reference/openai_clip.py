"""A PyTorch CLIP with OpenAI's attribute names (docs/weight_formats.md §4.2, §4.3), for OpenAI-layout test fixtures.

Written from the key table and the forward description: a ViT image tower (patch conv without bias, class
embedding, positions, ln_pre, pre-LN blocks, ln_post on the class token, projection) and a causal text tower pooled
at argmax(token ids). Attention is `nn.MultiheadAttention` with width // 64 heads, the MLP is c_fc -> QuickGELU ->
c_proj, LayerNorm eps 1e-5.
"""

import collections

import torch
from torch import nn

HEAD_DIM = 64


class QuickGELU(nn.Module):

  def forward(self, x):
    return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):

  def __init__(self, width: int, causal_length: int | None = None):
    super().__init__()
    self.attn = nn.MultiheadAttention(width, width // HEAD_DIM, batch_first=True)
    self.ln_1 = nn.LayerNorm(width)
    self.mlp = nn.Sequential(collections.OrderedDict(
        c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width)
    ))
    self.ln_2 = nn.LayerNorm(width)
    self.causal_length = causal_length

  def forward(self, x):
    """x: [batch, tokens, width]."""
    mask = None
    if self.causal_length is not None:
      length = x.shape[1]
      mask = torch.full((length, length), float("-inf")).triu(1)
    normed = self.ln_1(x)
    x = x + self.attn(normed, normed, normed, need_weights=False, attn_mask=mask)[0]
    return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):

  def __init__(self, width: int, layers: int, causal_length: int | None = None):
    super().__init__()
    self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, causal_length) for _ in range(layers)])

  def forward(self, x):
    return self.resblocks(x)


class VisionTransformer(nn.Module):

  def __init__(self, image_size: int, patch_size: int, width: int, layers: int, embed_dim: int):
    super().__init__()
    grid = image_size // patch_size
    self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
    self.class_embedding = nn.Parameter(0.1 * torch.randn(width))
    self.positional_embedding = nn.Parameter(0.1 * torch.randn(grid * grid + 1, width))
    self.ln_pre = nn.LayerNorm(width)
    self.transformer = Transformer(width, layers)
    self.ln_post = nn.LayerNorm(width)
    self.proj = nn.Parameter(width**-0.5 * torch.randn(width, embed_dim))

  def forward(self, images):
    """images: [batch, 3, height, width] -> [batch, embed_dim]."""
    patches = self.conv1(images).flatten(2).transpose(1, 2)
    cls = self.class_embedding.expand(patches.shape[0], 1, -1)
    x = torch.cat([cls, patches], dim=1) + self.positional_embedding
    x = self.transformer(self.ln_pre(x))
    return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):

  def __init__(self, embed_dim, image_size, vision_patch_size, vision_width, vision_layers, vocab_size,
               context_length, text_width, text_layers):
    super().__init__()
    self.visual = VisionTransformer(image_size, vision_patch_size, vision_width, vision_layers, embed_dim)
    self.token_embedding = nn.Embedding(vocab_size, text_width)
    self.positional_embedding = nn.Parameter(0.1 * torch.randn(context_length, text_width))
    self.transformer = Transformer(text_width, text_layers, causal_length=context_length)
    self.ln_final = nn.LayerNorm(text_width)
    self.text_projection = nn.Parameter(text_width**-0.5 * torch.randn(text_width, embed_dim))
    self.logit_scale = nn.Parameter(torch.tensor(2.6593))

  def encode_image(self, images):
    return self.visual(images)

  def encode_text(self, token_ids):
    """token_ids: [batch, length] int64 -> [batch, embed_dim], pooled at the largest id (EOT)."""
    x = self.token_embedding(token_ids) + self.positional_embedding[:token_ids.shape[1]]
    x = self.ln_final(self.transformer(x))
    return x[torch.arange(x.shape[0]), token_ids.argmax(dim=-1)] @ self.text_projection

  def forward(self, images, token_ids):
    return self.encode_image(images), self.encode_text(token_ids)
