"""ONNX Runtime backend: CPU everywhere; TensorRT/CUDA execution providers when present."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend.base import Backend, BackendInfo, check_input, dequantize, output_to_float
from edge_sdk.contract.card import ModelCard
from edge_sdk.errors import ArtifactError
from edge_sdk.targets import Target

# Best first. TensorRT builds an engine from QDQ ONNX (explicit quantization) on first run.
DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}


def open_session(
    path: str | Path,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    optimize: bool = True,
):  # -> onnxruntime.InferenceSession (untyped: onnxruntime is imported lazily)
    """Open an InferenceSession with a clear error for files that are not ONNX models."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    available = ort.get_available_providers()
    chosen = [p for p in (providers or DEFAULT_PROVIDERS) if p in available] or ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(
            f"{path}: not a readable ONNX model (truncated, corrupt or not ONNX): {first_line[:300]}"
        ) from None


def _dims(shape: Sequence[object]) -> tuple[int | None, ...]:
    """An ONNX Runtime shape with symbolic/unknown axes as None."""
    return tuple(d if isinstance(d, int) else None for d in shape)


class OnnxRuntimeBackend(Backend):
    """Runs ``.onnx`` artifacts (FP32, or QDQ INT8) on ONNX Runtime."""

    name = "onnxruntime"

    @classmethod
    def options_for(cls, target: Target, threads: int | None, device: str | None) -> dict[str, Any]:
        return {"threads": threads, "providers": target.providers or None}

    @classmethod
    def runtime_details(cls) -> str:
        import onnxruntime as ort

        return "providers: " + ", ".join(ort.get_available_providers())

    def __init__(
        self,
        path: Path,
        card: ModelCard,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        optimize: bool = True,
    ) -> None:
        """``optimize=False`` turns ONNX Runtime's graph optimisations off: a QDQ file then runs as float
        DequantizeLinear -> op -> QuantizeLinear (quantization simulated with exact sums, the same on every
        CPU), which is how a TensorRT artifact is judged on a machine without TensorRT."""
        super().__init__(path, card)
        import onnxruntime as ort

        self._ort_version = ort.__version__
        self._threads = threads
        self.session = open_session(path, threads=threads, providers=providers, optimize=optimize)
        try:  # ONNX Runtime decodes names and symbolic dimensions only when asked: corrupt bytes surface here
            inputs = self.session.get_inputs()
            input_shape = tuple(_dims(inputs[0].shape)) if inputs else ()
            outputs = {o.name: _dims(o.shape) for o in self.session.get_outputs()}
        except UnicodeDecodeError as exc:
            raise ArtifactError(
                f"{path}: not a readable ONNX model (corrupt: a name in its graph is not UTF-8, {exc.reason})"
            ) from None
        if len(inputs) != 1:
            raise ArtifactError(f"{path}: expected one image input, the model has {len(inputs)}")
        self._input = inputs[0]
        self._input_dtype = _ORT_TYPES.get(self._input.type)
        if self._input_dtype is None:
            raise ArtifactError(f"{path}: unsupported input type {self._input.type}")
        check_input(card.input, input_shape, self._input_dtype, str(path), ".onnx")
        card.check_outputs(outputs, str(path))
        self._output_names = list(card.output_tensors)

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(
            backend=self.name,
            runtime_version=self._ort_version,
            device=self.session.get_providers()[0],
            artifact=str(self.path),
            precision=self.card.export.precision,
            input_dtype=np.dtype(self._input_dtype).name,
            layout=self.card.input.layout,
            threads=self._threads,
        )

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = self._prepare_input(batch, self._input_dtype)
        values = self.session.run(self._output_names, {self._input.name: x})
        return {name: output_to_float(value) for name, value in zip(self._output_names, values, strict=True)}


__all__ = ["OnnxRuntimeBackend", "open_session", "dequantize"]
