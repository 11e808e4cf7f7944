"""Small ONNX models with the input/output signatures of InsightFace's packs, exported from torch
in the test run (no pack is reachable here, and none may be committed).

The detector is SCRFD-shaped (one (1, 3, 640, 640) input; scores, boxes and 5 points at strides
8, 16 and 32, two anchors per cell) and finds exactly one "face": the anchor it was built with,
at the box and points it was built with. The recognizer is ArcFace-shaped ((N, 3, 112, 112) ->
(N, 512)): a fixed random convolutional net, so different chips give different vectors.
"""

from __future__ import annotations

import io
import shutil
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

DET = 640
STRIDES = (8, 16, 32)


class TinyScrfd(nn.Module):
    def __init__(
        self, outputs: int = 9, centre: tuple[int, int] = (320, 240), half: int = 60
    ) -> None:
        super().__init__()
        self.outputs = outputs
        maps = []
        for stride in STRIDES:
            cells = DET // stride
            rows = cells * cells * 2
            score = torch.full((rows, 1), -10.0)
            box = torch.zeros(rows, 4)
            kps = torch.zeros(rows, 10)
            if stride == 16:
                cx, cy = centre[0] // stride, centre[1] // stride
                k = (cy * cells + cx) * 2
                score[k] = 10.0
                box[k] = half / stride
                # eyes, nose tip, mouth corners relative to the anchor, in strides
                pts = [(-22, -18), (22, -18), (0, 6), (-17, 30), (17, 30)]
                kps[k] = torch.tensor([c / stride for p in pts for c in p])
            maps += [torch.sigmoid(score), box, kps]
        # output order: scores of every stride, then boxes, then points
        order = [0, 3, 6, 1, 4, 7, 2, 5, 8]
        self.maps = nn.ParameterList(
            [nn.Parameter(maps[i], requires_grad=False) for i in order][:outputs]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zero = x.mean() * 0.0
        return tuple(m + zero for m in self.maps)


class TinyArcFace(nn.Module):
    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 8, stride=8)
        self.fc = nn.Linear(16 * 14 * 14, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def _export(module: nn.Module, shape: tuple[int, ...], dynamic: bool, outputs: int) -> bytes:
    buffer = io.BytesIO()
    names = [f"out{i}" for i in range(outputs)]
    # The TorchScript exporter works offline (the dynamo one wants onnxscript); it warns.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _run_export(module, shape, buffer, names, dynamic)
    return buffer.getvalue()


def _run_export(
    module: nn.Module, shape: tuple[int, ...], buffer: io.BytesIO, names: list[str], dynamic: bool
) -> None:
    torch.onnx.export(
        module.eval(),
        (torch.zeros(*shape),),
        buffer,  # type: ignore[arg-type]  # a file object is accepted too
        dynamo=False,
        input_names=["input.1"],
        output_names=names,
        dynamic_axes={"input.1": {0: "n"}, **({n: {0: "n"} for n in names} if dynamic else {})},
    )


def write_pack(
    folder: Path,
    detector: str = "det_10g.onnx",
    recognizer: str = "w600k_r50.onnx",
    *,
    det_outputs: int = 9,
    dim: int = 512,
    optional: bool = True,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / detector).write_bytes(
        _export(TinyScrfd(det_outputs), (1, 3, DET, DET), False, det_outputs)
    )
    (folder / recognizer).write_bytes(_export(TinyArcFace(dim), (1, 3, 112, 112), True, 1))
    if optional:
        (folder / "genderage.onnx").write_bytes(_export(TinyArcFace(3), (1, 3, 112, 112), True, 1))
    return folder


def zip_folder(folder: Path, target: Path, inside: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for f in sorted(folder.iterdir()):
            archive.write(f, f"{inside}/{f.name}" if inside else f.name)
    shutil.rmtree(folder)
    return target
