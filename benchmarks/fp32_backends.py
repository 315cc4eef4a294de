"""FP32 conversion and backend parity/latency: ONNX Runtime vs LiteRT vs OpenVINO on one carded ONNX.

    python benchmarks/fp32_backends.py [MODEL.onnx] [--runs 200] [--out DIR]

Converts MODEL (default: the packaged demo) to FP32 .tflite and OpenVINO IR, then prints JSON with
conversion seconds, artifact sizes, max |diff| per head vs the FP32 ONNX on 50 rendered faces, and
batch-1 single-thread median latency per backend. Workstation only (needs edge-sdk[export]).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_sdk.backend import load_backend
from edge_sdk.bench.timing import latency_stats, time_call
from edge_sdk.model import load_card, postprocess
from edge_sdk.model.face_model import DEMO_MODEL


def _median_ms(run: Callable[[np.ndarray], object], x: np.ndarray, runs: int) -> float:
    """Median ms of ``runs`` timed ``run(x)`` after 10 warm-up calls."""
    return round(latency_stats(time_call(lambda: run(x), runs, warmup=10))["p50"], 3)


def main() -> None:
    from edge_sdk_export.convert import onnx_to_openvino_fp32, onnx_to_tflite_fp32
    from edge_sdk_export.synthetic import render_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(DEMO_MODEL))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", default=None, help="keep the converted files here (default: a temp folder)")
    args = parser.parse_args()
    onnx = Path(args.model)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fp32-"))

    report: dict[str, object] = {"model": str(onnx), "machine": platform.processor() or platform.machine()}
    start = time.perf_counter()
    tflite = onnx_to_tflite_fp32(onnx, out / "tflite")
    middle = time.perf_counter()
    xml = onnx_to_openvino_fp32(onnx, out / "openvino")
    report["convert_s"] = {"tflite": round(middle - start, 2), "openvino": round(time.perf_counter() - middle, 2)}
    report["size_bytes"] = {
        "onnx": onnx.stat().st_size,
        "tflite": tflite.stat().st_size,
        "openvino_xml+bin": xml.stat().st_size + xml.with_suffix(".bin").stat().st_size,
    }

    card = load_card(onnx)
    faces = render_dataset(50, seed=2024, size=card.input.height).images
    runs = {"onnxruntime": (onnx, None), "litert": (tflite, None), "openvino": (xml, None)}
    backends = {name: load_backend(path, override, threads=1) for name, (path, override) in runs.items()}
    from edge_sdk.contract.processing import preprocess

    batch = preprocess(list(faces), card.input)
    ref_raw = backends["onnxruntime"].run(batch)
    ref_post = postprocess(card, ref_raw)
    diffs: dict[str, dict[str, float]] = {}
    for name, backend in backends.items():
        raw = backend.run(batch)
        post = postprocess(backend.card, raw)
        diffs[name] = {f"raw.{h}": float(np.abs(raw[h] - ref_raw[h]).max()) for h in ref_raw}
        diffs[name].update({f"post.{h}": float(np.abs(post[h] - ref_post[h]).max()) for h in ref_post})
    report["max_abs_diff_vs_onnx"] = diffs
    report["latency_ms_batch1_1thread_median"] = {
        name: _median_ms(backend.run, batch[:1], args.runs) for name, backend in backends.items()
    }
    lite = backends["litert"]
    report["litert_batch8_ms"] = {
        "resize_one_invoke": _median_ms(lite.run, batch[:8], 30),
        "eight_batch1_invokes": _median_ms(lambda x: [lite.run(x[i : i + 1]) for i in range(8)], batch[:8], 30),
    }
    report["info"] = {name: backend.info.__dict__ for name, backend in backends.items()}
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
