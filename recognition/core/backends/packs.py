"""InsightFace model packs as their publisher ships them, and the checks made before one is used.

faceweb ships no InsightFace weights: they are licensed for non-commercial research only. An
operator who downloads a pack (the folder, or the zip as published) installs it with
`manage.py install_model PATH --accept-licence`; this module knows the packs' file layouts and
checks each file's ONNX signature by opening it with onnxruntime and running it once on a blank
input. Pure: paths in, frozen dataclasses out; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import pathlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recognition.core.versions import ARCFACE_DIM, pack_version

# What InsightFace publishes about its pretrained models (README of the insightface repository,
# "License"): shown before any pack is installed, whatever the pack's own files say.
LICENCE_TERMS = (
    "InsightFace model packs (buffalo_*, antelopev2) are released by InsightFace for "
    "NON-COMMERCIAL RESEARCH PURPOSES ONLY. Any commercial use, including a paid or hosted "
    "service, needs a licence from InsightFace. "
    "faceweb does not ship these weights; by installing a pack you confirm that you obtained it "
    "yourself and that your use of it meets these terms."
)
LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENCE", "README.md", "README.txt", "license.txt")

DET_SIZE = 640  # SCRFD's input for a fixed-size or dynamic-size model
REC_SIZE = 112  # ArcFace's aligned chip
SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS = 2


@dataclass(frozen=True)
class PackLayout:
    detector: str
    recognizer: str
    optional: tuple[str, ...] = ()


_OPTIONAL = ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx")
KNOWN_PACKS: dict[str, PackLayout] = {
    "buffalo_l": PackLayout("det_10g.onnx", "w600k_r50.onnx", _OPTIONAL),
    "buffalo_m": PackLayout("det_2.5g.onnx", "w600k_r50.onnx", _OPTIONAL),
    "buffalo_s": PackLayout("det_500m.onnx", "w600k_mbf.onnx", _OPTIONAL),
    "antelopev2": PackLayout("scrfd_10g_bnkps.onnx", "glintr100.onnx", _OPTIONAL),
}


class PackError(ValueError):
    """The folder or zip is not a usable InsightFace pack (the message says why)."""


@dataclass(frozen=True)
class PackFile:
    name: str
    path: pathlib.Path
    sha256: str


@dataclass(frozen=True)
class Pack:
    name: str  # buffalo_l, antelopev2, ...
    version: str  # the embedder version its vectors carry
    detector: PackFile
    recognizer: PackFile
    optional: tuple[PackFile, ...]
    licence_text: str  # a licence or readme file found in the pack, if any
    dimension: int = ARCFACE_DIM

    @property
    def files(self) -> tuple[PackFile, ...]:
        return (self.detector, self.recognizer, *self.optional)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack_zip(path: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    """Extract a published pack zip into `into`, refusing members that would land outside it."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise PackError(f"{path.name} is not a zip file") from exc
    root = into.resolve()
    with archive:
        for member in archive.infolist():
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root):
                raise PackError(f"{path.name}: member {member.filename!r} leaves the folder")
        archive.extractall(root)
    return root


def _find(root: pathlib.Path, name: str) -> pathlib.Path | None:
    """A file of the pack at the root or one folder down (antelopev2.zip holds a folder)."""
    for candidate in [root / name, *sorted(root.glob(f"*/{name}"))]:
        if candidate.is_file():
            return candidate
    return None


def identify(root: pathlib.Path, name: str | None = None) -> tuple[str, PackLayout]:
    """The pack in a folder: by the name given, else by the files it holds."""
    if name is not None:
        if name in KNOWN_PACKS:
            return name, KNOWN_PACKS[name]
        raise PackError(f"unknown pack {name!r}; known: {', '.join(sorted(KNOWN_PACKS))}")
    for pack, layout in KNOWN_PACKS.items():
        if pack in {root.name, root.stem} and _find(root, layout.recognizer):
            return pack, layout
    found = [
        pack
        for pack, layout in KNOWN_PACKS.items()
        if _find(root, layout.detector) and _find(root, layout.recognizer)
    ]
    if len(found) == 1:
        return found[0], KNOWN_PACKS[found[0]]
    onnx = sorted(p.name for p in root.rglob("*.onnx"))
    raise PackError(
        "not a known InsightFace pack: expected the files of one of "
        f"{', '.join(sorted(KNOWN_PACKS))}; found {onnx or 'no .onnx files'}"
    )


def _session(path: pathlib.Path) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf classes
        raise PackError(f"{path.name} is not a loadable ONNX model: {exc}") from exc


def _static(dim: object) -> int | None:
    return dim if isinstance(dim, int) else None


def check_detector(path: pathlib.Path) -> None:
    """SCRFD with keypoints: one NCHW 3-channel input; nine outputs (score, box, 5 points at
    strides 8, 16, 32, two anchors per cell), checked by running it on a blank 640x640 image."""
    session = _session(path)
    inputs = session.get_inputs()  # type: ignore[attr-defined]
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or _static(inputs[0].shape[1]) != 3:
        shapes = [i.shape for i in inputs]
        raise PackError(f"{path.name}: expected one (N, 3, H, W) input, got {shapes}")
    h, w = (_static(d) for d in inputs[0].shape[2:])
    if (h is not None and h != DET_SIZE) or (w is not None and w != DET_SIZE):
        raise PackError(f"{path.name}: expected a {DET_SIZE}x{DET_SIZE} or dynamic input")
    outputs = session.get_outputs()  # type: ignore[attr-defined]
    if len(outputs) != 9:
        raise PackError(
            f"{path.name}: expected SCRFD's 9 outputs (scores, boxes, keypoints at 3 strides), "
            f"got {len(outputs)}; a detector without keypoints cannot align faces"
        )
    blank = np.zeros((1, 3, DET_SIZE, DET_SIZE), dtype=np.float32)
    results = session.run(None, {inputs[0].name: blank})  # type: ignore[attr-defined]
    for i, stride in enumerate(SCRFD_STRIDES):
        rows = (DET_SIZE // stride) ** 2 * SCRFD_ANCHORS
        for j, width in ((i, 1), (i + 3, 4), (i + 6, 10)):
            got = np.asarray(results[j])
            shape = got.shape[1:] if got.ndim == 3 else got.shape
            if tuple(shape) != (rows, width):
                raise PackError(
                    f"{path.name}: output {j} (stride {stride}) has shape {got.shape}, "
                    f"expected ({rows}, {width})"
                )


def check_recognizer(path: pathlib.Path, dimension: int = ARCFACE_DIM) -> None:
    """ArcFace: one (N, 3, 112, 112) input and one (N, 512) output, run once on a blank chip."""
    session = _session(path)
    inputs = session.get_inputs()  # type: ignore[attr-defined]
    want = (3, REC_SIZE, REC_SIZE)
    if len(inputs) != 1 or tuple(_static(d) for d in inputs[0].shape[1:]) != want:
        shapes = [i.shape for i in inputs]
        raise PackError(f"{path.name}: expected one (N, 3, 112, 112) input, got {shapes}")
    outputs = session.get_outputs()  # type: ignore[attr-defined]
    if len(outputs) != 1:
        raise PackError(f"{path.name}: expected one output, got {len(outputs)}")
    blank = np.zeros((2, 3, REC_SIZE, REC_SIZE), dtype=np.float32)
    try:
        got = np.asarray(session.run(None, {inputs[0].name: blank})[0])  # type: ignore[attr-defined]
    except Exception as exc:
        raise PackError(f"{path.name}: does not run on a batch of 2 chips: {exc}") from exc
    if got.shape != (2, dimension):
        raise PackError(f"{path.name}: output shape {got.shape}, expected (N, {dimension})")


def check_optional(path: pathlib.Path) -> None:
    session = _session(path)
    if len(session.get_inputs()) != 1:  # type: ignore[attr-defined]
        raise PackError(f"{path.name}: expected one input")


def read_pack(root: pathlib.Path, name: str | None = None) -> Pack:
    """Identify and validate the pack in a folder (an extracted zip is a folder too)."""
    if not root.is_dir():
        raise PackError(f"{root} is not a folder")
    pack, layout = identify(root, name)
    det, rec = _find(root, layout.detector), _find(root, layout.recognizer)
    missing = [n for n, p in ((layout.detector, det), (layout.recognizer, rec)) if p is None]
    if det is None or rec is None:
        raise PackError(f"{pack}: missing {', '.join(missing)}")
    check_detector(det)
    check_recognizer(rec)
    optional = []
    for extra in layout.optional:
        found = _find(root, extra)
        if found is not None:
            check_optional(found)
            optional.append(PackFile(extra, found, _sha256(found)))
    licence = ""
    for candidate in LICENCE_FILES:
        found = _find(root, candidate)
        if found is not None:
            licence = found.read_text(errors="replace")[:4000]
            break
    return Pack(
        name=pack,
        version=pack_version(pack),
        detector=PackFile(layout.detector, det, _sha256(det)),
        recognizer=PackFile(layout.recognizer, rec, _sha256(rec)),
        optional=tuple(optional),
        licence_text=licence,
    )


def installed_files(pack: Pack) -> Sequence[str]:
    return [f.name for f in pack.files]
