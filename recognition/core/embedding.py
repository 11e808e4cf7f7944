"""Face embeddings: dlib's metric-learning ResNet read from its .dat file and run in PyTorch.

The reader is pure Python (numpy only) and refuses any file whose layer sequence differs from
dlib's `dnn_face_recognition_ex.cpp` network, because the wiring (tags, skips) is not stored in the
file and is hard-coded here. See /work/shared/notes/dlib-resnet-in-torch.md for the format.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recognition.core.detection import model_path
from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION, EMBEDDING_DIM

DLIB_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
BATCH_SIZE = 64  # bounds activation memory: about 25 MB per chip at the first convolution


class Embedder(Protocol):
    name: str
    version: str
    dimension: int

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips -> (N, dimension) float32; N=0 gives (0, dimension)."""
        ...


class ModelFormatError(ValueError):
    """The file is not dlib's face ResNet as this reader knows it."""


# ---------------------------------------------------------------------------------------------
# dlib serialization primitives


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ModelFormatError(f"file truncated at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        if control & 0x70:
            raise ModelFormatError(f"bad integer control byte {control:#x} at {self.pos - 1}")
        value = int.from_bytes(self._take(control & 0x0F), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent >= 32000:
            raise ModelFormatError("non-finite float in model file")
        return float(mantissa * 2.0**exponent)

    def flag(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise ModelFormatError(f"bad boolean {byte!r} at {self.pos - 1}")
        return byte == b"1"

    def string(self) -> str:
        n = self.integer()
        if not 0 <= n < 256:
            raise ModelFormatError(f"implausible string length {n} at {self.pos}")
        return self._take(n).decode("ascii", errors="replace")

    def expect_str(self, expected: str) -> None:
        got = self.string()
        if got != expected:
            raise ModelFormatError(f"expected {expected!r}, found {got!r}")

    def expect_int(self, expected: int, what: str) -> None:
        got = self.integer()
        if got != expected:
            raise ModelFormatError(f"{what}: expected {expected}, found {got}")

    def tensor(self) -> np.ndarray:
        self.expect_int(2, "tensor version")
        shape = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in shape):
            raise ModelFormatError(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.expect_int(1, "alias_tensor version")
        return (self.integer(), self.integer(), self.integer(), self.integer())


# ---------------------------------------------------------------------------------------------
# The network as dlib's example defines it, outer to inner, and the layers' stored parameters


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # OIHW
    bias: np.ndarray
    stride: int
    padding: int


@dataclass(frozen=True)
class _Affine:
    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class _Pool:
    size: int  # 0: the whole image (avg_pool_everything)
    stride: int
    padding: int


@dataclass(frozen=True)
class _Fc:
    weight: np.ndarray  # (inputs, outputs), dlib's layout


_Layer = _Conv | _Affine | _Pool | _Fc | str  # str: a parameterless layer ("relu_", "add_prev_")

_RES = ("con", "affine", "relu", "con", "affine", "add_prev", "relu")
_RES_DOWN = ("con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu")
# Residual stages bottom-up: (filters, downsample first, number of blocks).
_STAGES = ((32, False, 3), (64, True, 4), (128, True, 3), (256, True, 3), (256, True, 1))


def _expected_layers() -> list[str]:
    """Layer types inner to outer, the order parameters are stored in."""
    layers = ["con", "affine", "relu", "max_pool"]
    for _, down, blocks in _STAGES:
        for i in range(blocks):
            layers.extend(_RES_DOWN if down and i == 0 else _RES)
    return [*layers, "avg_pool", "fc"]


def _expected_versions() -> list[int]:
    """Serialization versions outer to inner: 2 per layer, 1 per tag/skip, 3 for the bottom."""
    # Pre-order of one block: residual = relu, add_prev, affine, con, relu, affine, con, tag1;
    # residual_down = relu, add_prev, avg_pool, skip1, tag2, affine, con, relu, affine, con, tag1.
    res = [2] * 7 + [1]
    res_down = [2, 2, 2, 1, 1, 2, 2, 2, 2, 2, 1]
    inner: list[int] = [2, 2, 2, 3]  # max_pool, relu, affine, bottom con (with the input layer)
    for _, down, blocks in _STAGES:
        for i in range(blocks):
            inner = (res_down if down and i == 0 else res) + inner
    return [2, 2, *inner]  # fc, avg_pool_everything


def _read_layer(r: _Reader, kind: str) -> _Layer:
    name = r.string()
    if kind == "con":
        if name != "con_4":
            raise ModelFormatError(f"expected con_4, found {name!r}")
        params = r.tensor().ravel()
        filters, nr, nc = r.integer(), r.integer(), r.integer()
        stride_y, stride_x, pad_y, pad_x = r.integer(), r.integer(), r.integer(), r.integer()
        w_shape, b_shape = r.alias_tensor(), r.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            r.real()
        if nr != nc or stride_y != stride_x or pad_y != pad_x:
            raise ModelFormatError("non-square convolution")
        if w_shape[0] != filters or w_shape[2:] != (nr, nc) or b_shape != (1, filters, 1, 1):
            raise ModelFormatError(f"inconsistent convolution shapes {w_shape} {b_shape}")
        n_w = int(np.prod(w_shape))
        if params.size != n_w + filters:
            raise ModelFormatError("convolution parameter count mismatch")
        return _Conv(params[:n_w].reshape(w_shape), params[n_w:], stride_y, pad_y)
    if kind == "affine":
        if name != "affine_":
            raise ModelFormatError(f"expected affine_, found {name!r}")
        params = r.tensor().ravel()
        g_shape, b_shape = r.alias_tensor(), r.alias_tensor()
        if r.integer() != 0:  # dlib's CONV_MODE: one scale per channel; FC_MODE has one per value
            raise ModelFormatError("expected a per-channel affine layer")
        n = g_shape[1]
        if g_shape != b_shape or g_shape != (1, n, 1, 1) or params.size != 2 * n:
            raise ModelFormatError("inconsistent affine shapes")
        return _Affine(params[:n], params[n:])
    if kind in ("max_pool", "avg_pool"):
        if name != f"{kind}_2":
            raise ModelFormatError(f"expected {kind}_2, found {name!r}")
        nr, nc, stride_y, stride_x, pad_y, pad_x = (r.integer() for _ in range(6))
        if nr != nc or stride_y != stride_x or pad_y != pad_x:
            raise ModelFormatError("non-square pooling")
        return _Pool(nr, stride_y, pad_y)
    if kind in ("relu", "add_prev"):
        if name != f"{kind}_":
            raise ModelFormatError(f"expected {kind}_, found {name!r}")
        return name
    if kind == "fc":
        if name != "fc_2":
            raise ModelFormatError(f"expected fc_2, found {name!r}")
        outputs, inputs = r.integer(), r.integer()
        params = r.tensor()
        w_shape, _b_shape = r.alias_tensor(), r.alias_tensor()
        bias_mode = r.integer()
        for _ in range(4):
            r.real()
        if bias_mode != 1 or tuple(params.shape) != (inputs, outputs, 1, 1):
            raise ModelFormatError("expected fc_no_bias")
        if w_shape[:2] != (inputs, outputs):
            raise ModelFormatError("inconsistent fc shapes")
        return _Fc(params.reshape(inputs, outputs))
    raise AssertionError(kind)


def _read_layer_bookkeeping(r: _Reader, bottom: bool) -> None:
    # add_layer's training state: three flags and empty gradient/output tensors.
    for _ in range(3):
        r.flag()
    for _ in range(3):
        r.tensor()
    if bottom:
        r.integer()  # sample expansion factor


def _read_dlib_resnet(data: bytes) -> tuple[tuple[float, float, float], list[_Layer]]:
    r = _Reader(data)
    r.expect_int(1, "loss layer version")
    r.expect_str("loss_metric_2")
    for _ in range(2):  # margin and distance threshold: training only
        r.real()
    versions = [r.integer() for _ in _expected_versions()]
    if versions != _expected_versions():
        raise ModelFormatError("layer sequence differs from dlib's face ResNet")
    r.expect_str("input_rgb_image_sized")
    means = (r.real(), r.real(), r.real())
    r.expect_int(CHIP_SIZE, "input rows")
    r.expect_int(CHIP_SIZE, "input columns")
    layers = []
    for i, kind in enumerate(_expected_layers()):
        layers.append(_read_layer(r, kind))
        _read_layer_bookkeeping(r, bottom=i == 0)
    if r.pos != len(data):
        raise ModelFormatError(f"{len(data) - r.pos} bytes left after the last layer")
    return means, layers


# ---------------------------------------------------------------------------------------------
# The torch module


def _conv_affine(conv: _Conv, affine: _Affine) -> nn.Conv2d:
    """One convolution with dlib's following affine (folded batch norm) folded in as well."""
    out_ch, in_ch, k, _ = conv.weight.shape
    if affine.gamma.size != out_ch:
        raise ModelFormatError("affine does not match its convolution")
    layer = nn.Conv2d(in_ch, out_ch, k, stride=conv.stride, padding=conv.padding)
    gamma = affine.gamma.astype(np.float64)
    weight = conv.weight.astype(np.float64) * gamma[:, None, None, None]
    bias = conv.bias.astype(np.float64) * gamma + affine.beta
    layer.weight.data = torch.from_numpy(weight.astype(np.float32))
    layer.bias = nn.Parameter(torch.from_numpy(bias.astype(np.float32)))
    return layer


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # dlib's add_prev keeps the larger size and zero-extends the smaller tensor at the
    # bottom/right and in channels; cropping would be wrong.
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def extend(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return extend(a) + extend(b)


class _Block(nn.Module):
    def __init__(self, first: nn.Conv2d, second: nn.Conv2d, down: bool) -> None:
        super().__init__()
        self.first = first
        self.second = second
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.second(F.relu(self.first(x)))
        # The downsampling shortcut is a 2x2 average pool, no projection convolution.
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_prev(y, shortcut))


_L = TypeVar("_L", _Conv, _Affine, _Pool, _Fc, str)


class DlibResnet(nn.Module):
    """dlib's face ResNet: (N, 3, 150, 150) float RGB in 0..255 -> (N, 128) embeddings."""

    mean: torch.Tensor

    def __init__(self, means: tuple[float, float, float], layers: list[_Layer]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32).view(1, 3, 1, 1))
        it: Iterator[_Layer] = iter(layers)

        def take(cls: type[_L]) -> _L:
            layer = next(it)
            if not isinstance(layer, cls):
                raise ModelFormatError(f"expected {cls.__name__}, found {layer!r}")
            return layer

        self.stem = _conv_affine(take(_Conv), take(_Affine))
        take(str)
        pool = take(_Pool)
        if (pool.size, pool.stride, pool.padding) != (3, 2, 0):
            raise ModelFormatError("unexpected stem pooling")
        blocks = []
        for filters, down, count in _STAGES:
            for i in range(count):
                first = _conv_affine(take(_Conv), take(_Affine))
                take(str)
                second = _conv_affine(take(_Conv), take(_Affine))
                if first.out_channels != filters or second.out_channels != filters:
                    raise ModelFormatError(f"expected {filters} filters in this stage")
                is_down = down and i == 0
                if is_down:
                    shortcut = take(_Pool)
                    if (shortcut.size, shortcut.stride, shortcut.padding) != (2, 2, 0):
                        raise ModelFormatError("unexpected shortcut pooling")
                take(str)
                take(str)
                blocks.append(_Block(first, second, is_down))
        self.blocks = nn.Sequential(*blocks)
        if take(_Pool).size != 0:
            raise ModelFormatError("expected a global average pool")
        fc = take(_Fc)
        self.fc = nn.Linear(fc.weight.shape[0], fc.weight.shape[1], bias=False)
        self.fc.weight.data = torch.from_numpy(np.ascontiguousarray(fc.weight.T))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = (rgb - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.blocks(x)
        out: torch.Tensor = self.fc(x.mean(dim=(2, 3)))
        return out


def load_dlib_resnet(path: pathlib.Path) -> torch.nn.Module:
    """Read dlib_face_recognition_resnet_model_v1.dat into an eval-mode torch module.

    Raises ModelFormatError for a truncated or corrupted file, a different layer sequence, or
    bytes left over after the last layer.
    """
    means, layers = _read_dlib_resnet(pathlib.Path(path).read_bytes())
    return DlibResnet(means, layers).eval()


# ---------------------------------------------------------------------------------------------
# Embedders


def _check_chips(chips: np.ndarray) -> np.ndarray:
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(f"expected (N, 150, 150, 3) uint8 chips, got {chips.dtype} {chips.shape}")
    return chips


class DlibResnetEmbedder:
    name = DLIB_RESNET_VERSION
    version = DLIB_RESNET_VERSION
    dimension = EMBEDDING_DIM

    def __init__(
        self, module: torch.nn.Module, device: str = "cpu", batch_size: int = BATCH_SIZE
    ) -> None:
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.batch_size = batch_size

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = _check_chips(chips)
        out = np.empty((len(chips), self.dimension), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(chips), self.batch_size):
                batch = torch.from_numpy(chips[start : start + self.batch_size])
                x = batch.to(self.device).permute(0, 3, 1, 2).float()
                out[start : start + len(batch)] = self.module(x).cpu().numpy()
        return out


class DlibFlipEmbedder:
    """dlib's ResNet on each chip and on its mirror image, the two descriptors averaged
    (version dlib-resnet-flip-v1): one forward pass over both, so about twice the cost."""

    name = DLIB_RESNET_FLIP_VERSION
    version = DLIB_RESNET_FLIP_VERSION
    dimension = EMBEDDING_DIM

    def __init__(self, plain: DlibResnetEmbedder) -> None:
        self.plain = plain

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = _check_chips(chips)
        both = self.plain.embed(np.concatenate([chips, chips[:, :, ::-1]]))
        mean: np.ndarray = ((both[: len(chips)] + both[len(chips) :]) / 2).astype(np.float32)
        return mean


class DlibReferenceEmbedder:
    """dlib's own compute_face_descriptor, one chip at a time: for parity tests and benchmarks."""

    name = "dlib-reference"
    version = DLIB_RESNET_VERSION
    dimension = EMBEDDING_DIM

    def __init__(self, path: pathlib.Path | None = None) -> None:
        import dlib

        self.model = dlib.face_recognition_model_v1(str(path or model_path(DLIB_RESNET_FILE)))

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = _check_chips(chips)
        out = np.empty((len(chips), self.dimension), dtype=np.float32)
        for i, chip in enumerate(chips):
            out[i] = np.asarray(self.model.compute_face_descriptor(np.ascontiguousarray(chip)))
        return out


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def _cached_embedder(name: str, device: str, threads: int) -> Embedder:
    if name == DLIB_RESNET_VERSION:
        if device.startswith("cuda"):
            # TF32 convolutions drift ~1e-3 from dlib's fp32 results; keep full precision.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        else:
            torch.set_num_threads(threads)
        return DlibResnetEmbedder(load_dlib_resnet(model_path(DLIB_RESNET_FILE)), device)
    if name == DLIB_RESNET_FLIP_VERSION:
        plain = _cached_embedder(DLIB_RESNET_VERSION, device, threads)
        assert isinstance(plain, DlibResnetEmbedder)
        return DlibFlipEmbedder(plain)
    if name == "dlib-reference":
        return DlibReferenceEmbedder()
    raise ValueError(f"unknown embedder {name!r}")


def get_embedder(
    name: str = DLIB_RESNET_VERSION, device: str | None = None, threads: int | None = None
) -> Embedder:
    """The named embedder, built once per process (weights load once per worker).

    On CPU, torch's thread count is set to `threads` (default: every core this process may
    use). The count is process-wide; more torch threads than free cores (e.g. two 2-thread
    workers on 2 cores) made batch-1 embedding 5-10x slower than one thread in BENCHMARKS.md.
    """
    threads = threads or len(os.sched_getaffinity(0))
    return _cached_embedder(name, device or _default_device(), threads)
