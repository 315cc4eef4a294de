"""LiteRT (TensorFlow Lite) backend: ``.tflite`` artifacts, FP32 or full-integer INT8, on XNNPACK.

XNNPACK is LiteRT's default CPU delegate: the interpreter applies it on creation to every
operator it supports (float and int8 alike), so there is nothing to switch on here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend.base import Backend, BackendInfo, QuantParams, check_input, output_to_float
from edge_sdk.contract.card import ModelCard
from edge_sdk.errors import ArtifactError, BackendUnavailableError, ContractError

INSTALL_HINT = "pip install 'edge-sdk[litert]' (or tflite-runtime on older Raspberry Pi OS)"
# Card and interpreter input quantization must agree this closely (they are copies of one number).
_QUANT_RTOL = 1e-5


def _interpreter_module() -> tuple[Any, str, str]:
    """(interpreter module, runtime name, version): ai_edge_litert first, then tflite_runtime."""
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter

        return interpreter, "ai_edge_litert", getattr(ai_edge_litert, "__version__", "unknown")
    except ImportError:
        pass
    try:
        import tflite_runtime
        from tflite_runtime import interpreter

        return interpreter, "tflite_runtime", getattr(tflite_runtime, "__version__", "unknown")
    except ImportError:
        raise BackendUnavailableError(
            f"backend 'litert' needs ai_edge_litert or tflite_runtime; install it with: {INSTALL_HINT}"
        ) from None


def tensor_quant(detail: dict[str, Any]) -> QuantParams | None:
    """Per-tensor (scale, zero_point) of an interpreter tensor detail, or None when it is not quantized."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not scale:
        return None
    return float(scale), int(zero_point)


class LiteRTBackend(Backend):
    """Runs ``.tflite`` artifacts. Takes the shared NCHW float32 batch and handles NHWC layout,
    int8/uint8 input quantization and output dequantization itself."""

    name = "litert"

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None) -> None:
        super().__init__(path, card)
        module, self._runtime, self._version = _interpreter_module()
        self._threads = threads
        source = str(path)
        try:
            self.interpreter = module.Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(
                f"{path}: not a readable TFLite model (truncated, corrupt or not TFLite): {str(exc).strip()[:300]}"
            ) from None
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise ArtifactError(f"{path}: expected one image input, the model has {len(inputs)}")
        self._input = inputs[0]
        self._input_dtype = np.dtype(self._input["dtype"])
        self._check_input(source)
        outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        card.check_outputs({name: tuple(int(s) for s in d["shape"]) for name, d in outputs.items()}, source)
        self._outputs = [(name, outputs[name]["index"]) for name in card.output_tensors]
        self._output_quant = {name: tensor_quant(outputs[name]) for name in card.output_tensors}
        self._batch = int(self._input["shape"][0])
        self._resizable = True

    def _check_input(self, source: str) -> None:
        """The interpreter's input must match the card's layout, size, dtype and quantization."""
        spec = self.card.input
        check_input(spec, [int(s) for s in self._input["shape"]], self._input_dtype, source, ".tflite")
        self._input_quant = tensor_quant(self._input)
        if not np.issubdtype(self._input_dtype, np.integer):
            return
        if self._input_quant is None:
            raise ArtifactError(f"{source}: {self._input_dtype} input has no quantization parameters")
        scale, zero_point = self._input_quant
        if spec.scale is not None and (
            not np.isclose(spec.scale, scale, rtol=_QUANT_RTOL, atol=0.0) or spec.zero_point != zero_point
        ):
            raise ContractError(
                "input.scale",
                f"card says scale {spec.scale}, zero_point {spec.zero_point}; the .tflite input uses "
                f"scale {scale}, zero_point {zero_point}",
                source,
            )

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(
            backend=self.name,
            runtime_version=f"{self._runtime} {self._version}",
            device="XNNPACK (CPU)",
            artifact=str(self.path),
            precision=self.card.export.precision,
            input_dtype=self._input_dtype.name,
            layout=self.card.input.layout,
            threads=self._threads,
            extra={"batch_mode": "resize" if self._resizable else "per-sample"},
        )

    def _resize(self, n: int) -> bool:
        """Resize the input to batch ``n``; False (and remember it) if the graph cannot be resized."""
        if n == self._batch:
            return True
        if not self._resizable:
            return False
        shape = [n, *(int(s) for s in self._input["shape"][1:])]
        try:
            self.interpreter.resize_tensor_input(self._input["index"], shape, strict=False)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            # Some converted graphs bake batch 1 into reshapes; fall back to one sample per invoke.
            self._resizable = False
            self.interpreter.resize_tensor_input(self._input["index"], [1, *shape[1:]], strict=False)
            self.interpreter.allocate_tensors()
            self._batch = 1
            return False
        self._batch = n
        return True

    def _invoke(self, x: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self._input["index"], x)
        self.interpreter.invoke()
        values = []
        for name, index in self._outputs:
            values.append(output_to_float(self.interpreter.get_tensor(index), self._output_quant[name]))
        return values

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        # The interpreter's own input quantization (the card's agrees within _QUANT_RTOL, see _check_input).
        x = self._prepare_input(batch, self._input_dtype, self._input_quant)
        n = x.shape[0]
        if self._resize(n):
            values = self._invoke(x)
        else:
            if self._batch != 1:
                self._resize(1)
            rows = [self._invoke(x[i : i + 1]) for i in range(n)]
            values = [np.concatenate(parts, axis=0) for parts in zip(*rows, strict=True)]
        out = {}
        for (name, _), value in zip(self._outputs, values, strict=True):
            if value.shape[0] != n:
                raise ArtifactError(f"{self.path}: output {name!r} has {value.shape[0]} rows for a batch of {n}")
            out[name] = value
        return out


__all__ = ["LiteRTBackend", "tensor_quant"]
