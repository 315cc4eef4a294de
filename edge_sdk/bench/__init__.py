"""``benchmark``: latency, throughput, size and memory of a target's artifacts on this machine.

Device runtime only (onnxruntime, and LiteRT/OpenVINO when the target needs them); never imports
torch, TensorFlow, NNCF or the ``export`` package. Result schema (``edge-sdk-benchmark/1``):

* ``target`` {name, device, artifact_format, quantization}; ``machine`` (CPU, cores, OS, board,
  runtime versions, ONNX Runtime providers, load average); ``settings`` (runs, warm-up, threads...).
* ``results``: one row per artifact x thread count/device with ``variant`` (fp32, int8, pruned-int8,
  fp32-plain-ort), ``runtime``, ``ran_on`` (the provider/device that actually ran), ``device_figure``
  and ``device_note``, sizes, ``load_ms``, ``first_inference_ms``, ``rss_delta_mb``,
  ``latency_ms`` {min, p50, p90, p99, max, mean, std}, ``fps``, ``speedup_vs_fp32``,
  ``speedup_vs_baseline``, ``fidelity`` (from the export report).
* ``device_figures`` (all rows measured on the real target device), ``hints``, ``notes``, ``pipeline``.
"""

from edge_sdk.bench.run import SCHEMA, BenchConfig, run_benchmark

__all__ = ["SCHEMA", "BenchConfig", "run_benchmark"]
