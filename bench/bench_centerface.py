"""CenterFace's two CPU runtimes: onnxruntime on the graph as shipped (weights listed as inputs),
onnxruntime on the graph recognition/core/centerface.py loads (weights as constants), and a
torch module built from the ONNX initialisers (eager, and traced + frozen), at several input
sizes with 1 and 2 threads.

Run: .venv/bin/python -m bench.bench_centerface
Prints the numbers and writes the `centerface-runtime` section of BENCHMARKS.md. Needs the `onnx`
package (evaluation/requirements.txt) to read the graph for the torch module; the app does not.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from bench._report import write_section
from recognition.core.centerface import INPUT_NAME, OUTPUT_NAMES, dynamic_graph, model_path

SIZES = ((640, 480), (1024, 768), (1344, 896), (2048, 1536))


class CenterFaceTorch(torch.nn.Module):
    """The ONNX graph (Conv, Relu, Add, ConvTranspose, BatchNormalization, Sigmoid) run node by
    node in torch, with the initialisers as buffers."""

    def __init__(self, path: str) -> None:
        import onnx
        from onnx import numpy_helper

        super().__init__()
        graph = onnx.load(path).graph
        self.weights = {
            t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer
        }
        self.nodes = [
            (
                n.op_type,
                list(n.input),
                n.output[0],
                {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute},
            )
            for n in graph.node
        ]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env = {INPUT_NAME: x}
        for op, inputs, output, attrs in self.nodes:
            a = [env[i] if i in env else self.weights[i] for i in inputs]
            if op == "Conv":
                pads = attrs["pads"]
                y = F.conv2d(
                    a[0],
                    a[1],
                    a[2] if len(a) > 2 else None,
                    stride=attrs["strides"],
                    padding=(pads[0], pads[1]),
                    groups=attrs["group"],
                )
            elif op == "Relu":
                y = F.relu(a[0])
            elif op == "Add":
                y = a[0] + a[1]
            elif op == "Sigmoid":
                y = torch.sigmoid(a[0])
            elif op == "ConvTranspose":
                y = F.conv_transpose2d(a[0], a[1], stride=attrs["strides"])
            elif op == "BatchNormalization":
                y = F.batch_norm(a[0], a[3], a[4], a[1], a[2], False, 0.0, attrs["epsilon"])
            else:
                raise ValueError(f"unexpected ONNX op {op}")
            env[output] = y
        return tuple(env[name] for name in OUTPUT_NAMES)


def best_ms(run: Callable[[], object], repeats: int = 5) -> float:
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the app
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def main() -> None:
    path = model_path()
    shipped = path.read_bytes()
    as_loaded = dynamic_graph(shipped)
    # The shipped graph has a fixed 32x32 input: only its weight listing is kept for this row.
    import onnx

    static = onnx.load(str(path))
    for value in list(static.graph.input) + list(static.graph.output):
        if value.name in (INPUT_NAME, *OUTPUT_NAMES):
            value.type.tensor_type.ClearField("shape")
    weights_as_inputs = static.SerializeToString()
    module = CenterFaceTorch(str(path)).eval()
    load_before = os.getloadavg()[0]
    rows = []
    max_diff = 0.0
    for threads in (1, 2):
        torch.set_num_threads(threads)
        runtimes = {
            "onnxruntime, graph as shipped": session(weights_as_inputs, threads),
            "onnxruntime, weights as constants (used)": session(as_loaded, threads),
        }
        for width, height in SIZES:
            x = np.random.default_rng(0).uniform(0, 255, (1, 3, height, width)).astype(np.float32)
            cells: dict[str, float] = {}
            for name, sess in runtimes.items():
                cells[name] = best_ms(functools.partial(sess.run, None, {INPUT_NAME: x}))
            tx = torch.from_numpy(x)
            with torch.inference_mode():
                reference = runtimes["onnxruntime, weights as constants (used)"].run(
                    None, {INPUT_NAME: x}
                )
                ours = module(tx)
                max_diff = max(
                    max_diff,
                    *(
                        float(np.abs(r - o.numpy()).max())
                        for r, o in zip(reference, ours, strict=True)
                    ),
                )
                cells["torch, eager"] = best_ms(functools.partial(module, tx), repeats=3)
                frozen = torch.jit.freeze(torch.jit.trace(module, tx))
                cells["torch, traced + frozen"] = best_ms(functools.partial(frozen, tx), repeats=3)
            for name, ms in cells.items():
                rows.append((threads, f"{width}x{height}", name, ms))
                print(f"{threads} thread(s), {width}x{height}, {name}: {ms:.0f} ms", flush=True)
    load_after = os.getloadavg()[0]
    names = list(dict.fromkeys(name for *_, name, _ in rows))
    header = "| Threads | Input | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 2)]
    for threads in (1, 2):
        for width, height in SIZES:
            size = f"{width}x{height}"
            cells = {name: ms for t, s, name, ms in rows if t == threads and s == size}
            lines.append(
                f"| {threads} | {size} | " + " | ".join(f"{cells[n]:.0f}" for n in names) + " |"
            )
    print(f"max |torch - onnxruntime| = {max_diff:.1e}; load {load_before:.2f} -> {load_after:.2f}")
    write_section(
        "centerface-runtime",
        f"""## CenterFace runtime (`python -m bench.bench_centerface`)

Milliseconds per image (best of 5, 3 for torch) for one forward pass of CenterFace on CPU.
1-minute load average {load_before:.2f} before and {load_after:.2f} after (shared machine). The
torch module is the ONNX graph run node by node from its initialisers; its outputs match
onnxruntime's to {max_diff:.1e}. onnxruntime with the weights as graph constants (as
`recognition/core/centerface.py` loads the file) is the fastest at every size, so it is the
runtime; the CUDA path is onnxruntime's CUDA provider (`onnxruntime-gpu`).

{chr(10).join(lines)}
""",
    )
    print("wrote the 'centerface-runtime' section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
