"""Choose the reference backbone: FP32 vs INT8 latency of each candidate on ONNX Runtime and OpenVINO.

    python benchmarks/backbone_choice.py [--rounds 15] [--runs 20] [--out benchmarks/results]

Random weights, batch 1, one thread, 112x112. INT8 = ONNX Runtime ``quantize_static`` (QDQ, per-channel
int8 weights, uint8 activations) and NNCF ``quantize`` on the OpenVINO model, both calibrated on
rendered faces. Variants are timed interleaved (one block of runs per variant per round, rotating the
order, each block after one untimed call; ``edge_sdk.bench.timing``) so that background load hits them
alike; the reported figure is the median single-run latency.
Writes ``backbone_choice.json`` and ``backbone_choice.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_sdk.bench.timing import latency_stats, time_interleaved
from edge_sdk.contract.card import Provenance
from edge_sdk_export.network import BACKBONES, INPUT_NAME, INPUT_SIZE, build_network, count_params, reference_card
from edge_sdk_export.onnx_io import export_onnx
from edge_sdk_export.pruning import count_ops
from edge_sdk_export.synthetic import render_dataset

CALIBRATION_FACES = 48
RUNTIMES = ("onnxruntime", "openvino", "litert")


def machine_name() -> str:
    model = platform.processor() or platform.machine()
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{os.cpu_count()}-core x86 dev box ({model}), no GPU"


def calibration_batches(n: int = CALIBRATION_FACES, seed: int = 77) -> list[np.ndarray]:
    faces = render_dataset(n, seed, 112).images[:, :, :, ::-1].astype(np.float32) / 255.0
    x = ((faces - 0.5) / 0.5).transpose(0, 3, 1, 2)
    return [np.ascontiguousarray(x[i : i + 1]) for i in range(n)]


def ort_int8(fp32: Path, out: Path, calib: list[np.ndarray]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            return None if item is None else {INPUT_NAME: item}

    prepped = out.with_name(out.stem + "_prep.onnx")
    quant_pre_process(str(fp32), str(prepped))
    quantize_static(
        str(prepped),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def ort_runner(path: Path) -> Callable[[np.ndarray], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {INPUT_NAME: x})


def openvino_models(fp32: Path, calib: list[np.ndarray]) -> tuple[object, object]:
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32))
    model.reshape({INPUT_NAME: [1, 3, 112, 112]})
    quantized = nncf.quantize(model, nncf.Dataset(calib), subset_size=len(calib))
    return model, quantized


def openvino_runner(model: object) -> Callable[[np.ndarray], object]:
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})


def litert_models(fp32: Path, work: Path, calib: list[np.ndarray]) -> tuple[Path, Path]:
    """FP32 and full-integer INT8 ``.tflite`` of ``fp32`` via the export package's onnx2tf path."""
    from edge_sdk.model import load_card
    from edge_sdk_export.convert import onnx_to_tflite_fp32
    from edge_sdk_export.quant_tflite import quantize_tflite

    tflite_fp32 = onnx_to_tflite_fp32(fp32, work)
    tflite_int8, _card = quantize_tflite(
        fp32, work / f"{fp32.stem}_int8.tflite", load_card(fp32), np.concatenate(calib)
    )
    return tflite_fp32, tflite_int8


def litert_runner(path: Path) -> Callable[[np.ndarray], object]:
    """Runs on a fixed input of the interpreter's own shape/dtype (layout and quantization are the model's)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    fixed = np.zeros(detail["shape"], detail["dtype"])

    def run(_x: np.ndarray) -> None:
        interpreter.set_tensor(detail["index"], fixed)
        interpreter.invoke()

    return run


def time_runners(runners: dict[str, Callable[[np.ndarray], object]], rounds: int, runs: int) -> dict[str, dict]:
    """Median and p90 ms of each runner: 10 warm-up rounds, then ``rounds`` rounds of ``runs`` calls each."""
    x = calibration_batches(1, seed=5)[0]
    calls = [lambda run=run: run(x) for run in runners.values()]
    samples = time_interleaved(calls, rounds * runs, warmup=10, block=runs)
    timings: dict[str, dict] = {}
    for name, latencies in zip(runners, samples, strict=True):
        stats = latency_stats(latencies)
        timings[name] = {"median_ms": round(stats["p50"], 3), "p90_ms": round(stats["p90"], 3), "n": len(latencies)}
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    parser.add_argument("--litert", action="store_true", help="also convert with onnx2tf and time LiteRT (slow)")
    args = parser.parse_args(argv)

    import onnxruntime
    import openvino
    import torch

    torch.manual_seed(0)
    calib = calibration_batches()
    card = reference_card(Provenance("random weights (benchmark)", synthetic_demo=True))
    runners: dict[str, Callable[[np.ndarray], object]] = {}
    budget: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in BACKBONES:
            model = build_network(backbone)
            budget[backbone] = {
                "params_M": round(count_params(model) / 1e6, 3),
                "macs_M": round(count_ops(model, (INPUT_SIZE, INPUT_SIZE))[0] / 1e6, 1),
            }
            fp32 = Path(tmp) / f"{backbone}.onnx"
            export_onnx(model, fp32, card)
            int8 = ort_int8(fp32, Path(tmp) / f"{backbone}_int8.onnx", calib)
            ov_fp32, ov_int8 = openvino_models(fp32, calib)
            runners[f"{backbone}/onnxruntime/fp32"] = ort_runner(fp32)
            runners[f"{backbone}/onnxruntime/int8"] = ort_runner(int8)
            runners[f"{backbone}/openvino/fp32"] = openvino_runner(ov_fp32)
            runners[f"{backbone}/openvino/int8"] = openvino_runner(ov_int8)
            if args.litert:
                tfl_fp32, tfl_int8 = litert_models(fp32, Path(tmp) / f"{backbone}_tflite", calib)
                runners[f"{backbone}/litert/fp32"] = litert_runner(tfl_fp32)
                runners[f"{backbone}/litert/int8"] = litert_runner(tfl_int8)
        load_before = os.getloadavg()
        timings = time_runners(runners, args.rounds, args.runs)
        load_after = os.getloadavg()

    rows = []
    for backbone in BACKBONES:
        row = {"backbone": backbone, **budget[backbone]}
        for runtime in RUNTIMES:
            if f"{backbone}/{runtime}/fp32" not in timings:
                continue
            fp, q = (timings[f"{backbone}/{runtime}/{p}"]["median_ms"] for p in ("fp32", "int8"))
            row[f"{runtime}_fp32_ms"], row[f"{runtime}_int8_ms"] = fp, q
            row[f"{runtime}_int8_speedup"] = round(fp / q, 2)
        rows.append(row)
    # Choice: INT8 on ONNX Runtime is the CPU/Jetson path and must be >= 1.8x FP32; among backbones that
    # meet it, the fastest INT8 ONNX Runtime latency wins.
    eligible = [r for r in rows if r["onnxruntime_int8_speedup"] >= 1.8] or rows
    chosen = min(eligible, key=lambda r: r["onnxruntime_int8_ms"])["backbone"]
    result = {
        "machine": machine_name(),
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__,
            "torch": torch.__version__,
        },
        "settings": {
            "input": "1x3x112x112",
            "threads": 1,
            "rounds": args.rounds,
            "runs_per_round": args.runs,
            "weights": "random",
            "calibration_faces": CALIBRATION_FACES,
        },
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "rows": rows,
        "timings": timings,
        "chosen": chosen,
        "rule": "fastest ONNX Runtime INT8 latency among backbones whose INT8 speedup on ONNX Runtime is >= 1.8x",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backbone_choice.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "backbone_choice.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [
        "# Backbone choice",
        "",
        f"Machine: {result['machine']}. Load average before/after: {result['load_average']['before']} / "
        f"{result['load_average']['after']} (other jobs shared the 2 cores).",
        f"Versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}. "
        "Batch 1, 1 thread, 112x112, random weights, median of interleaved runs.",
        "",
        "| backbone | params (M) | MACs (M) | ORT FP32 ms | ORT INT8 ms | ORT speedup "
        "| OV FP32 ms | OV INT8 ms | OV speedup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['backbone']} | {r['params_M']} | {r['macs_M']} | {r['onnxruntime_fp32_ms']} | "
            f"{r['onnxruntime_int8_ms']} | {r['onnxruntime_int8_speedup']}x | {r['openvino_fp32_ms']} | "
            f"{r['openvino_int8_ms']} | {r['openvino_int8_speedup']}x |"
        )
    if any("litert_fp32_ms" in r for r in result["rows"]):
        lines += ["", "| backbone | LiteRT FP32 ms | LiteRT INT8 ms | LiteRT speedup |", "|---|---|---|---|"]
        lines += [
            f"| {r['backbone']} | {r['litert_fp32_ms']} | {r['litert_int8_ms']} | {r['litert_int8_speedup']}x |"
            for r in result["rows"]
            if "litert_fp32_ms" in r
        ]
    lines += ["", f"Chosen: **{result['chosen']}** (rule: {result['rule']}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
