"""FP32 format conversion of a carded ONNX model: ONNX -> TFLite (onnx2tf) and ONNX -> OpenVINO IR.

Both converters copy the ONNX card into a sidecar ``<stem>.card.json`` next to the artifact,
with the input layout, output tensor names, export info and file hashes of the new format.
They run fully offline (see :func:`_offline_onnx2tf`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_sdk.backend.base import prepare_input, to_layout
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.card_io import load_card, sha256_file
from edge_sdk.errors import ArtifactError
from edge_sdk_export.artifacts import write_sidecar

log = logging.getLogger(__name__)

# A converted model must reproduce the ONNX outputs this closely on a random input, or conversion fails.
CONVERSION_ATOL = 1e-3
# onnx2tf wants 20 "calibration" images (N x 128 x 128 x 3 in [0, 1]) even for FP32; it only uses them
# to run the ONNX and TF graphs side by side while it converts.
_ONNX2TF_SAMPLE_SHAPE = (20, 128, 128, 3)


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send everything written to fd 1/2 (Python and the TF/absl C++ loggers) to ``log_path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(sys.__stdout__), contextlib.redirect_stderr(sys.__stderr__):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _log_tail(log_path: Path, lines: int = 15) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _local_sample_images() -> np.ndarray:
    """What onnx2tf would download: a deterministic local stand-in (smooth random images in [0, 1])."""
    rng = np.random.default_rng(0)
    coarse = rng.random((_ONNX2TF_SAMPLE_SHAPE[0], 8, 8, 3), dtype=np.float32)
    return np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)


def _refuse_network(*args: object, **kwargs: object) -> None:
    raise RuntimeError("edge-sdk export runs offline: onnx2tf tried to reach the network")


@contextlib.contextmanager
def _offline_onnx2tf() -> Iterator[None]:
    """Pre-empt onnx2tf's only network access.

    For any model whose inputs all look like images (4-D, batch <= 20, 3 channels) onnx2tf 1.28
    calls ``download_test_image_data()`` - an HTTP GET to GitHub releases - even for an FP32
    conversion. We replace that function in both modules that hold a reference to it with a
    local sample, and make ``requests`` raise for the duration so any other fetch fails loudly
    instead of silently going online.
    """
    import onnx2tf.onnx2tf as o2t_main
    import onnx2tf.utils.common_functions as o2t_common
    import requests

    patches = [
        (o2t_main, "download_test_image_data", _local_sample_images),
        (o2t_common, "download_test_image_data", _local_sample_images),
        (requests, "get", _refuse_network),
        (requests.Session, "request", _refuse_network),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def _onnx_reference(onnx_path: Path, card: ModelCard, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    from edge_sdk.backend.onnxruntime_backend import open_session

    session = open_session(onnx_path, threads=1)
    names = list(card.output_tensors)
    feed = np.ascontiguousarray(to_layout(x_nchw, card.input.layout))
    return dict(zip(names, session.run(names, {card.input.name: feed}), strict=True))


def _probe_input(card: ModelCard) -> np.ndarray:
    rng = np.random.default_rng(123)
    shape = (1, card.input.channels, card.input.height, card.input.width)
    return rng.normal(0.0, 1.0, shape).astype(np.float32)


def _tflite_output_names(tflite_path: Path, onnx_path: Path, card: ModelCard) -> dict[str, str]:
    """ONNX output name -> TFLite output tensor name, found by running both on the same random input.

    onnx2tf 1.28 builds the .tflite from a concrete function, so the file has no signature that
    names outputs and its tensor names ("Identity_1"...) say nothing about the ONNX outputs.
    Each ONNX output is paired with the one TFLite output of the same size that reproduces it
    within :data:`CONVERSION_ATOL`; no pairing or an ambiguous one fails the export.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
    interpreter.allocate_tensors()
    (tfl_input,) = interpreter.get_input_details()
    x = _probe_input(card)
    interpreter.set_tensor(tfl_input["index"], prepare_input(x, "NHWC", tfl_input["dtype"]))
    interpreter.invoke()
    produced = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    mapping: dict[str, str] = {}
    for onnx_name, expected in _onnx_reference(onnx_path, card, x).items():
        diffs = {
            name: float(np.max(np.abs(value.reshape(expected.shape) - expected)))
            for name, value in produced.items()
            if value.size == expected.size
        }
        close = [name for name, diff in diffs.items() if diff <= CONVERSION_ATOL]
        if len(close) != 1:
            best = min(diffs.values(), default=float("nan"))
            raise ArtifactError(
                f"{tflite_path}: ONNX output {onnx_name!r} matches {len(close)} TFLite outputs within "
                f"{CONVERSION_ATOL} (closest differs by {best:.2e}); the conversion is wrong or ambiguous"
            )
        mapping[onnx_name] = close[0]
    if len(set(mapping.values())) != len(mapping):
        raise ArtifactError(f"{tflite_path}: two ONNX outputs map to one TFLite output: {mapping}")
    return mapping


def _versions(*modules: str) -> str:
    import importlib

    parts = []
    for name in modules:
        try:
            parts.append(f"{name} {importlib.import_module(name).__version__}")
        except (ImportError, AttributeError):
            continue
    return ", ".join(parts)


def _derived_card(card: ModelCard, onnx_path: Path, tool: str, layout: str, names: dict[str, str]) -> ModelCard:
    heads = tuple(replace(h, output=names[h.tensor]) for h in card.heads)
    return card.with_changes(
        input=replace(card.input, layout=layout),
        heads=heads,
        export=replace(card.export, precision="fp32", tool=tool),
        provenance=replace(card.provenance, parent_sha256=sha256_file(onnx_path)),
    )


def onnx2tf_input(onnx_path: Path, dest: Path, layout: str = "NCHW") -> Path:
    """Write to ``dest`` the graph onnx2tf can convert: batch 1 with static shapes, NCHW input.

    Two things break onnx2tf 1.28 on graphs that Keras/TF exporters (tf2onnx) write, and neither is specific
    to one model:

    * a symbolic batch (``unk__113``): onnx2tf's ``batch_size=1`` fixes the input only, so it cannot infer the
      layout of the NHWC->NCHW ``Reshape``/``Transpose`` that follows and feeds a Conv the wrong axis
      ("Depth of output (32) is not a multiple of the number of groups (64)"). Here every graph input and
      output gets batch 1 and ONNX shape inference (with data propagation) fills in every static shape;
    * an **NHWC input** (``layout == "NHWC"`` in the card): onnx2tf assumes NCHW and transposes a
      (1, 64, 64, 1) input into a (1, 64, 1, 64) "image", a silently wrong graph (its calibration then fails
      or, worse, quantizes garbage). Here a new NCHW input with the original name feeds the graph through a
      ``Transpose`` (perm 0, 2, 3, 1), so onnx2tf produces the usual NHWC TF input and folds the transposes.
    """
    import onnx
    from onnx import TensorProto, helper, shape_inference

    model = onnx.load(str(onnx_path))
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    for value in graph.output:  # re-inferred below from the static input
        value.type.tensor_type.ClearField("shape")
    if layout == "NHWC":
        for value in inputs:
            dims = value.type.tensor_type.shape.dim
            if len(dims) != 4:
                continue
            name, inner = value.name, f"{value.name}__nhwc"
            for node in graph.node:
                node.input[:] = [inner if x == name else x for x in node.input]
            n, h, w, c = (d.dim_value or d.dim_param for d in dims)
            elem = value.type.tensor_type.elem_type or TensorProto.FLOAT
            value.CopyFrom(helper.make_tensor_value_info(name, elem, [n, c, h, w]))
            graph.node.insert(0, helper.make_node("Transpose", [name], [inner], perm=[0, 2, 3, 1], name=inner))
    del graph.value_info[:]
    model = shape_inference.infer_shapes(model, data_prop=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return dest


def run_onnx2tf(onnx_path: Path, work: Path, log_path: Path, layout: str = "NCHW") -> Path:
    """onnx2tf on a *copy* of ``onnx_path``, offline and quiet; outputs (saved_model, float32 .tflite) in ``work``.

    onnx2tf 1.28 rewrites its input ONNX in place (it clears output shapes and saves over the file), which
    would change the user's model and break its card's hash, so it only ever sees a copy: the one
    :func:`onnx2tf_input` writes (batch 1, static shapes, NCHW input whatever the card's ``layout``). The
    TF/TFLite model always has an NHWC input.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source_copy" / onnx_path.name
    try:
        onnx2tf_input(onnx_path, source, layout)
    except Exception as exc:  # onnx raises its own checker/inference errors
        raise ArtifactError(f"{onnx_path}: cannot prepare the graph for onnx2tf: {str(exc).strip()[:300]}") from None
    try:
        with _quiet(log_path), _offline_onnx2tf():
            import onnx2tf

            onnx2tf.convert(
                input_onnx_file_path=str(source),
                output_folder_path=str(work),
                not_use_onnxsim=True,  # onnxsim is not a dependency; onnx2tf would shell out to it
                batch_size=1,  # static NHWC input; the runtime resizes for other batch sizes
                non_verbose=True,
            )
    except (Exception, SystemExit) as exc:  # onnx2tf calls sys.exit(1) on some failures
        raise ArtifactError(
            f"{onnx_path}: onnx2tf conversion failed ({type(exc).__name__}: {exc}); log tail:\n{_log_tail(log_path)}"
        ) from None
    return work


# Run in a fresh interpreter: LiteRT aborts the process (TFLITE_CHECK -> abort()) on some malformed or
# out-of-range quantized graphs instead of raising, so an artifact is only ever opened in-process after this
# child has allocated and invoked it once.
_LITERT_PROBE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
for detail in interpreter.get_input_details():
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
print("edge-sdk litert probe: ok")
"""


def check_litert_loads(tflite_path: Path, timeout_s: float = 120.0) -> None:
    """Allocate and invoke ``tflite_path`` once in a child Python; ArtifactError (signal, LiteRT's text) if it fails.

    A native abort or segfault there would otherwise take down the exporting process.
    """
    try:
        result = subprocess.run(
            [sys.executable, "-c", _LITERT_PROBE, str(tflite_path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")},
        )
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{tflite_path}: LiteRT did not allocate and run it within {timeout_s:.0f} s") from None
    if result.returncode == 0 and "edge-sdk litert probe: ok" in result.stdout:
        log.debug("%s: LiteRT allocates and invokes it", tflite_path)
        return
    lines = [x for x in result.stderr.strip().splitlines() if x.strip() and not x.startswith("INFO: Created")]
    detail = "\n".join(lines[-8:])
    if result.returncode < 0:
        how = f"LiteRT crashed ({signal.Signals(-result.returncode).name})"
    else:
        how = f"LiteRT refused it (exit {result.returncode})"
    raise ArtifactError(f"{tflite_path}: {how} in allocate_tensors/invoke; its last words:\n{detail}")


def onnx_to_tflite_fp32(onnx_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a carded ONNX model to an NHWC float32 ``<stem>.tflite`` with a sidecar card.

    Uses onnx2tf (offline; its console output goes to ``<stem>.onnx2tf.log`` in ``out_dir``).
    Returns the ``.tflite`` path. Raises ArtifactError if the result does not reproduce the
    ONNX outputs within :data:`CONVERSION_ATOL`.
    """
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    card = load_card(onnx_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{onnx_path.stem}.tflite"
    log_path = out_dir / f"{onnx_path.stem}.onnx2tf.log"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="onnx2tf-") as work:
        run_onnx2tf(onnx_path, Path(work), log_path, card.input.layout)
        produced = Path(work) / f"{onnx_path.stem}_float32.tflite"
        if not produced.is_file():
            raise ArtifactError(f"{onnx_path}: onnx2tf wrote no float32 .tflite; log tail:\n{_log_tail(log_path)}")
        shutil.copyfile(produced, target)
    check_litert_loads(target)
    names = _tflite_output_names(target, onnx_path, card)
    tool = _versions("onnx2tf", "tensorflow")
    write_sidecar(_derived_card(card, onnx_path, tool, "NHWC", names), [target])
    return target


def onnx_to_openvino_fp32(onnx_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a carded ONNX model to OpenVINO IR ``<stem>.xml`` + ``.bin`` (FP32 weights) with a sidecar.

    OpenVINO keeps the ONNX output names as tensor names, so heads keep their ``output``; every
    head's tensor is checked to exist. Returns the ``.xml`` path.
    """
    import openvino as ov

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    card = load_card(onnx_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / f"{onnx_path.stem}.xml"
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ArtifactError(f"{onnx_path}: OpenVINO could not convert it: {str(exc).strip()[:300]}") from None
    available = {name for output in model.outputs for name in output.get_names()}
    missing = [t for t in card.output_tensors if t not in available]
    if missing:
        raise ArtifactError(f"{onnx_path}: OpenVINO model lost output names {missing} (has {sorted(available)})")
    ov.save_model(model, str(xml), compress_to_fp16=False)
    names = {t: t for t in card.output_tensors}
    tool = f"openvino {ov.get_version().split('-')[0]} convert_model"
    write_sidecar(_derived_card(card, onnx_path, tool, card.input.layout, names), [xml, xml.with_suffix(".bin")])
    return xml
