"""What a U-Net config implies for tiling, derived by integer arithmetic.

Pure: no torch, no IO.  Two walks over the layer structure of a config:

* a *size walk* (`raw_output_size`) gives the output length of an input length,
  or None where some layer cannot take it (odd length before a pooling, a skip
  that cannot be centre-cropped, nothing left);
* a *dependence walk* (`input_interval`) gives, for an interval of output
  indices, the interval of input indices it can depend on.  Each layer maps
  output indices to input indices the way PyTorch computes it, so the radius is
  exact, not a rule of thumb; tests confirm it with gradient probes.

Both walks are per axis: every layer is separable in its index arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from pipeline.errors import GeometryError
from pipeline.model.config import UNetConfig

Interval = tuple[int, int]


def _conv3_back(cfg: UNetConfig, lo: int, hi: int) -> Interval:
    return (lo, hi + 2) if cfg.padding == "valid" else (lo - 1, hi + 1)


def _down_back(cfg: UNetConfig, lo: int, hi: int) -> Interval:
    if cfg.down == "maxpool":
        return 2 * lo, 2 * hi + 1
    return 2 * lo - 1, 2 * hi + 1  # conv k3 s2 p1


def _up_back(cfg: UNetConfig, lo: int, hi: int) -> Interval:
    if cfg.up == "bilinear":
        # align_corners=False: output o samples input o/2 - 1/4 between floor and floor + 1
        return (2 * lo - 1) // 4, (2 * hi - 1) // 4 + 1
    if cfg.up_kernel == 2:
        return lo // 2, hi // 2
    return -((1 - lo) // 2), (hi + 1) // 2  # k3 s2 p1 output_padding 1: o = 2i - 1 + k


def _up_size(cfg: UNetConfig, n: int) -> int:
    return 2 * n - 2 * up_edge_crop(cfg)


def up_edge_crop(cfg: UNetConfig) -> int:
    """Pixels a valid net drops on each side after bilinear up-sampling (which clamps at edges)."""
    return 1 if (cfg.up == "bilinear" and cfg.padding == "valid") else 0


def _head_back(cfg: UNetConfig, lo: int, hi: int) -> Interval:
    return (lo - 1, hi + 1) if cfg.head_kernel == 3 else (lo, hi)


def _conv_pair_size(cfg: UNetConfig, n: int) -> int:
    return n - 4 if cfg.padding == "valid" else n


def layer_sizes(cfg: UNetConfig, n: int) -> tuple[list[int], list[int]] | None:
    """Encoder outputs per level (skips, then bottom) and decoder outputs per level.

    None if a layer cannot take the length `n`.
    """
    encoder: list[int] = []
    x = n
    for level in range(cfg.depth + 1):
        if level:
            if x % 2:
                return None
            x //= 2
        x = _conv_pair_size(cfg, x)
        if x < 1:
            return None
        encoder.append(x)
    decoder = [0] * cfg.depth
    for level in reversed(range(cfg.depth)):
        up = _up_size(cfg, x)
        spare = encoder[level] - up
        if spare < 0 or spare % 2 or (cfg.padding == "same" and spare):
            return None
        x = _conv_pair_size(cfg, up)
        if x < 1:
            return None
        decoder[level] = x
    return encoder, decoder


def raw_output_size(cfg: UNetConfig, n: int) -> int | None:
    """Length of the network's output for an input of length `n`, or None."""
    sizes = layer_sizes(cfg, n)
    return None if sizes is None else sizes[1][0] if cfg.depth else sizes[0][0]


def skip_crops(cfg: UNetConfig, n: int) -> list[int]:
    """Per level, how many pixels each side the skip feature is cropped by (0 for same nets).

    Constant over legal input lengths: skip and up path grow at the same rate.
    """
    sizes = layer_sizes(cfg, n)
    if sizes is None:
        raise GeometryError(f"input length {n} is not legal for this net")
    encoder, decoder = sizes
    ups = [_up_size(cfg, decoder[level + 1] if level + 1 < cfg.depth else encoder[-1]) for level in range(cfg.depth)]
    return [(encoder[level] - ups[level]) // 2 for level in range(cfg.depth)]


def input_interval(cfg: UNetConfig, lo: int, hi: int, skip_crops: list[int]) -> Interval:
    """Input indices that output indices [lo, hi] depend on (index arithmetic only)."""

    def encoder(level: int, lo: int, hi: int) -> Interval:
        lo, hi = _conv3_back(cfg, *_conv3_back(cfg, lo, hi))
        if level == 0:
            return lo, hi
        return encoder(level - 1, *_down_back(cfg, lo, hi))

    def decoder(level: int, lo: int, hi: int) -> Interval:
        if level == cfg.depth:
            return encoder(level, lo, hi)
        lo, hi = _conv3_back(cfg, *_conv3_back(cfg, lo, hi))
        skip = encoder(level, lo + skip_crops[level], hi + skip_crops[level])
        crop = up_edge_crop(cfg)
        up = decoder(level + 1, *_up_back(cfg, lo + crop, hi + crop))
        return min(skip[0], up[0]), max(skip[1], up[1])

    return decoder(0, *_head_back(cfg, lo, hi))


@dataclass(frozen=True)
class NetGeometry:
    """Everything tiling needs to know about a net, as integers.

    * `factor`: tile origins must be multiples of it (pooling phase).
    * `radius`: an output pixel depends on input pixels at most this far from the
      input pixel it sits on, over every phase of the pooling grid.
    * `margin`: context kept around every output tile.  Same nets: `radius`
      rounded up to `factor`, so that tile origins stay aligned and zero padding
      never reaches a kept pixel.  Valid nets: half the shrink (92 for the
      paper's net); a valid net never pads, so a phase-aligned tile is exact
      even where one phase of its dependence reaches a little further.
    * `shrink`: input length minus raw output length (0 for same nets).
    * `residue`, `first_input`: legal input lengths are `first_input + k * factor`.
    """

    factor: int
    radius: int
    margin: int
    shrink: int
    residue: int
    first_input: int

    def __post_init__(self) -> None:
        padded = self.shrink == 0
        if (padded and self.margin < self.radius) or 2 * self.margin < self.shrink:
            raise GeometryError(f"inconsistent geometry {self}: margin must cover the radius and the shrink")

    @property
    def output_offset(self) -> int:
        """Input index of raw output index 0."""
        return self.shrink // 2

    def is_valid_input(self, n: int) -> bool:
        return n >= self.first_input and (n - self.residue) % self.factor == 0

    def valid_input_at_least(self, n: int) -> int:
        """Smallest legal input length >= n."""
        if n <= self.first_input:
            return self.first_input
        return self.first_input + -(-(n - self.first_input) // self.factor) * self.factor

    def raw_output_size(self, n: int) -> int:
        if not self.is_valid_input(n):
            raise GeometryError(f"input length {n} is not legal for this net: {self.describe_valid_inputs()}")
        return n - self.shrink

    def exact_output_size(self, n: int) -> int:
        """Output pixels of a tile of length n that see their full context."""
        return n - 2 * self.margin

    def step(self, n: int) -> int:
        """Output pixels a tile of length n contributes: exact ones, a multiple of `factor`."""
        return max(0, self.exact_output_size(n) // self.factor * self.factor)

    @cached_property
    def min_tile(self) -> int:
        """Smallest legal tile that contributes at least `factor` output pixels."""
        return self.valid_input_at_least(2 * self.margin + self.factor)

    def describe_valid_inputs(self) -> str:
        return f"legal lengths are {self.first_input} + k*{self.factor} (k >= 0)"


def net_geometry(cfg: UNetConfig) -> NetGeometry:
    """Derive the tiling geometry of `cfg` from its layer structure."""
    factor = cfg.factor
    first = next((n for n in range(1, 64 * factor + 512) if raw_output_size(cfg, n) is not None), None)
    if first is None:
        raise GeometryError(f"no input length up to {64 * factor + 512} fits this net: {cfg}")
    crops = skip_crops(cfg, first)
    shrink = first - (raw_output_size(cfg, first) or 0)
    centre = shrink // 2
    radius = 0
    # Every phase of the pooling grid; far from index 0 so that no index is negative.
    for j in range(4 * factor, 5 * factor):
        lo, hi = input_interval(cfg, j, j, crops)
        radius = max(radius, j + centre - lo, hi - (j + centre))
    margin = centre if cfg.padding == "valid" else -(-radius // factor) * factor
    return NetGeometry(
        factor=factor, radius=radius, margin=margin, shrink=shrink, residue=first % factor, first_input=first
    )
