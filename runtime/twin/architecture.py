"""The layer graph of MediaPipe's selfie_multiclass_256x256, written as builder calls.

Structure (NHWC, from the model card and the reference graph in shared/reference):
  * MobileNetV2-style encoder: 3x3/2 stem, four inverted-residual blocks down to 32x32.
  * Two MobileViT-v2-style stages ("separable self-attention": one context score per patch,
    softmax over patches, a context vector broadcast back), 4x4 patches, at 32x32x128 (2 blocks)
    and 16x16x192 (4 blocks).
  * A multi-scale decoder: lateral 1x1 branches at 16/32/64/128, nearest-neighbour top-down
    path, bilinear merge at 128x128, a depthwise-separable head, a 2x2/2 transposed conv to
    256x256 and a 1x1 classifier that emits 6 per-class logits.
Synthetic weights: latency is representative, masks are meaningless.
"""

from __future__ import annotations

from .graph import GraphBuilder, Tensor

INPUT_SHAPE = (1, 256, 256, 3)
NUM_CLASSES = 6
PATCH = 4


def inverted_residual(g: GraphBuilder, x: Tensor, expand: int, cout: int, stride: int) -> Tensor:
    y = g.conv2d(x, expand, relu=True)
    y = g.depthwise(y, 3, stride, relu=True)
    y = g.conv2d(y, cout)
    if stride == 1 and x.shape[-1] == cout:
        y = g.add(y, x)
    return y


def unfold(g: GraphBuilder, x: Tensor) -> Tensor:
    """(1, H, W, C) -> (1, P*P pixels, patches, C), as the TFLite graph does it."""
    _, h, w, c = x.shape
    y = g.reshape(x, (-1, PATCH, w // PATCH, PATCH * c))
    y = g.transpose(y, (0, 2, 1, 3))
    y = g.reshape(y, (-1, (h // PATCH) * (w // PATCH), PATCH * PATCH, c))
    return g.transpose(y, (0, 2, 1, 3))


def fold(g: GraphBuilder, x: Tensor, h: int, w: int) -> Tensor:
    """Inverse of `unfold`."""
    c = x.shape[-1]
    y = g.transpose(x, (0, 2, 1, 3))
    y = g.reshape(y, (-1, w // PATCH, PATCH, PATCH * c))
    y = g.transpose(y, (0, 2, 1, 3))
    return g.reshape(y, (-1, h, w, c))


def separable_attention_block(g: GraphBuilder, x: Tensor, ffn_dim: int) -> Tensor:
    """out = x + attention(norm(x)) + ffn(norm(x)), attention and FFN in parallel."""
    _, pixels, patches, c = x.shape
    n = g.channel_affine(x)
    ffn = g.conv2d(g.conv2d(n, ffn_dim), c)
    value = g.conv2d(n, c, relu=True)
    key = g.conv2d(n, c)
    scores = g.conv2d(n, 1)
    scores = g.reshape(g.softmax(g.reshape(scores, (1, pixels, 1, patches))), (1, pixels, patches, 1))
    context = g.reduce_sum(g.mul(key, scores), axis=2)
    attended = g.conv2d(g.mul(value, context), c)
    return g.add(ffn, g.add(attended, x))


def transformer_stage(g: GraphBuilder, x: Tensor, dim: int, ffn_dim: int, blocks: int) -> Tensor:
    _, h, w, _ = x.shape
    y = g.conv2d(x, dim, 3, relu=True)
    y = g.conv2d(y, dim, relu=True)
    y = unfold(g, y)
    for _ in range(blocks):
        y = separable_attention_block(g, y, ffn_dim)
    return fold(g, y, h, w)


def lateral(g: GraphBuilder, x: Tensor, cout: int) -> Tensor:
    """Per-channel 1x1 depthwise scale, then a 1x1 projection."""
    return g.conv2d(g.depthwise(x, 1), cout)


def build(g: GraphBuilder) -> Tensor:
    image = g.input("input_29", INPUT_SHAPE)

    # Encoder
    stem = g.conv2d(image, 16, 3, 2, relu=True)                 # 128x128x16
    x = inverted_residual(g, stem, 96, 64, 1)                   # 128x128x64
    x = inverted_residual(g, x, 384, 128, 2)                    # 64x64x128
    c64 = inverted_residual(g, x, 768, 128, 1)                  # 64x64x128
    x = inverted_residual(g, c64, 768, 256, 2)                  # 32x32x256
    x = transformer_stage(g, x, 128, 256, blocks=2)             # 32x32x128
    c32 = g.conv2d(x, 256)                                      # 32x32x256
    x = inverted_residual(g, c32, 1536, 384, 2)                 # 16x16x384
    x = transformer_stage(g, x, 192, 384, blocks=4)             # 16x16x192
    x = g.conv2d(x, 384)
    p16 = lateral(g, x, 64)                                     # 16x16x64

    # Top-down path (nearest-neighbour upsampling + lateral connections)
    p32 = g.add(g.resize(p16, 32, "nearest"), lateral(g, c32, 64))
    p64 = g.add(g.resize(p32, 64, "nearest"), lateral(g, c64, 64))
    p128 = g.add(g.resize(p64, 128, "nearest"), lateral(g, stem, 64))

    # Multi-scale merge at 128x128: one depthwise-separable smoothing per level
    def smooth(p: Tensor) -> Tensor:
        y = g.conv2d(g.depthwise(p, 3), 64)
        return y if y.shape[1] == 128 else g.resize(y, 128, "bilinear")

    merged = g.add(g.add(g.add(smooth(p128), smooth(p64)), smooth(p32)), smooth(p16))

    # Head
    y = g.conv2d(g.depthwise(merged, 3, relu=True), 32, relu=True)
    for _ in range(4):
        y = g.conv2d(g.depthwise(y, 3, relu=True), 32, relu=True)
    y = g.transpose_conv(y, 32, kernel=2, stride=2)            # 256x256x32
    # A small classifier gain keeps synthetic logits in a softmax-friendly range.
    logits = g.conv2d(y, NUM_CLASSES, gain=0.15)
    g.mark_output(logits, "Identity")
    return logits
