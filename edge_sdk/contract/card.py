"""The model contract: a versioned, validated card that travels inside every artifact.

A card says what a model expects (input size, layout, colour order, normalisation, dtype and
int8 quantization) and what it returns (named heads with labels and the activation to apply),
where it came from (provenance, incl. whether it is a synthetic demo) and how it was exported
(target, precision, pruning). ONNX files embed it in ``metadata_props`` under
:data:`ONNX_METADATA_KEY`; ``.tflite`` and OpenVINO ``.xml`` files carry a sidecar
``<stem>.card.json`` that also records the sha256 of each file it describes.

Every validation failure raises :class:`~edge_sdk.errors.ContractError` naming the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_sdk.contract.ranges import Range
from edge_sdk.errors import ContractError

CONTRACT_VERSION = "1.1"  # what new cards are written as
# 1.1 adds input.channels (1 or 3), color_order GRAY and input.crop; a 1.0 card loads unchanged (3 channels,
# ArcFace-aligned crop) and may not use them.
SUPPORTED_CONTRACT_VERSIONS = frozenset({"1.0", "1.1"})
FIELDS_SINCE_1_1 = ("input.channels", "input.crop")
ONNX_METADATA_KEY = "edge_sdk.card"
SIDECAR_SUFFIX = ".card.json"

HEAD_KINDS = ("au_occurrence", "au_intensity", "expression", "valence_arousal", "pain")
ACTIVATIONS = ("none", "sigmoid", "softmax", "tanh", "clamp")
LAYOUTS = ("NCHW", "NHWC")
COLOR_ORDERS = ("RGB", "BGR", "GRAY")  # GRAY iff input.channels is 1
CHANNELS = (1, 3)
CROP_METHODS = ("aligned", "box")  # similarity warp onto a landmark template, or the detector box grown by a margin
CROP_TEMPLATES = ("arcface",)  # five-point templates an aligned crop can use (edge_sdk.face.align)
CROP_KEYS = {"aligned": ("method", "template", "scale"), "box": ("method", "margin", "square")}
INPUT_DTYPES = ("float32", "float16", "int8", "uint8")
PRECISIONS = ("fp32", "fp16", "int8")

# The kinds of number a card holds, each one finite range (see edge_sdk.contract.ranges).
INPUT_SIDE = Range(1, 4096, integer=True)  # input.size: pixels of a face crop side
PIXEL_MEAN = Range(0, 1)  # input.mean: a mean of pixels scaled to [0, 1]
PIXEL_STD = Range(0, 1, low_open=True)  # input.std: > 0, or the image would be flipped or blown up
QUANT_SCALE = Range(0, 1000, low_open=True)  # input.scale of an int8/uint8 input
ZERO_POINT = {"int8": Range(-128, 127, integer=True), "uint8": Range(0, 255, integer=True)}
COLUMN = Range(0, 1 << 20, integer=True)  # heads[].columns: an index into an output's last axis
OUTPUT_BOUND = Range(-1e6, 1e6)  # heads[].clamp: an output value
CROP_SCALE = Range(0.25, 4)  # input.crop.scale: how much of the crop the template face fills, relative to 1.0
CROP_MARGIN = Range(0, 2)  # input.crop.margin: fraction the detector box grows by on each side's total

# PSPI (Prkachin & Solomon Pain Intensity) = AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43.
PSPI_AUS = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")

# The expression classes of the reference network, in its output order.
EXPRESSION_LABELS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")

# The action units of the reference network, in its output order (AU43 = eyes closed).
AU_LABELS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU17", "AU25", "AU26", "AU43")


def _require(data: dict[str, Any], key: str, path: str, source: str | None) -> Any:
    if key not in data:
        raise ContractError(f"{path}{key}", "is missing", source)
    return data[key]


def _object(value: Any, field_name: str, source: str | None) -> dict[str, Any]:
    """``value`` when it is a JSON object (a section of the card)."""
    if not isinstance(value, dict):
        raise ContractError(field_name, f"expected an object, got {type(value).__name__}", source)
    return value


def _check_choice(value: Any, choices: tuple[str, ...], field_name: str, source: str | None) -> str:
    if value not in choices:
        raise ContractError(field_name, f"got {value!r}, expected one of {', '.join(choices)}", source)
    return value


def _number(value: Any, within: Range, field_name: str, source: str | None) -> Any:
    """``value`` when it is a number in ``within`` (NaN, infinity, booleans and strings never are)."""
    problem = within(value)
    if problem:
        raise ContractError(field_name, f"{problem}, got {value!r}", source)
    return value


def _numbers(value: Any, length: int, within: Range, field_name: str, source: str | None) -> tuple[float, ...]:
    """A list of ``length`` numbers, each in ``within``, as floats."""
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise ContractError(field_name, f"expected a list of {length} numbers, got {value!r}", source)
    for item in value:
        problem = within(item)
        if problem:
            raise ContractError(field_name, f"each value {problem}, got {value!r}", source)
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class CropSpec:
    """How the runtime cuts a detected face out of a frame, so it matches what the model was trained on.

    ``aligned`` (the default, and the only crop of 1.0 cards) warps the face so its five landmarks land on
    ``template`` (ArcFace's 112x112 points scaled to the input size); ``scale`` > 1 zooms out (the face fills
    1/scale of the crop, more context), < 1 zooms in. ``box`` takes the detector box grown by ``margin`` (0.2
    = 20 % larger), made ``square`` around its centre when asked, and resizes it without any warp: what a
    model trained on loose detector boxes (e.g. FER2013-style crops) expects.

    >>> CropSpec.from_dict({"method": "box", "margin": 0.2, "square": True}).to_dict()
    {'method': 'box', 'margin': 0.2, 'square': True}
    """

    method: str = "aligned"
    template: str = "arcface"
    scale: float = 1.0
    margin: float = 0.2
    square: bool = True

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> CropSpec:
        data = _object(data, "input.crop", source)
        method = _check_choice(
            _require(data, "method", "input.crop.", source), CROP_METHODS, "input.crop.method", source
        )
        unused = sorted(set(data) - set(CROP_KEYS[method]))
        if unused:
            problem = f"not used by method {method!r} (it takes {', '.join(CROP_KEYS[method][1:])})"
            raise ContractError(f"input.crop.{unused[0]}", problem, source)
        if method == "aligned":
            template = _check_choice(data.get("template", "arcface"), CROP_TEMPLATES, "input.crop.template", source)
            scale = _number(data.get("scale", 1.0), CROP_SCALE, "input.crop.scale", source)
            return cls(method=method, template=template, scale=float(scale))
        margin = _number(data.get("margin", 0.2), CROP_MARGIN, "input.crop.margin", source)
        square = data.get("square", True)
        if not isinstance(square, bool):
            raise ContractError("input.crop.square", f"expected true or false, got {square!r}", source)
        return cls(method=method, margin=float(margin), square=square)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in CROP_KEYS[self.method]}


@dataclass(frozen=True)
class InputSpec:
    """What the model's single image input expects.

    ``channels`` is 3 (``color_order`` RGB or BGR) or 1 (``GRAY``: OpenCV's BGR->gray luma). ``mean``/``std``
    (one number per channel) apply to pixels scaled to [0, 1] in ``color_order``:
    ``x = (pixel / 255 - mean) / std``. For an int8/uint8 input, ``scale``/``zero_point``
    quantize that normalised value: ``q = round(x / scale) + zero_point``. ``crop`` says how faces are cut
    out of frames (:class:`CropSpec`).
    """

    name: str
    height: int
    width: int
    layout: str = "NCHW"
    color_order: str = "RGB"
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    dtype: str = "float32"
    scale: float | None = None
    zero_point: int | None = None
    channels: int = 3
    crop: CropSpec = field(default_factory=CropSpec)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The batch-1 input shape in this spec's layout."""
        if self.layout == "NCHW":
            return (1, self.channels, self.height, self.width)
        return (1, self.height, self.width, self.channels)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None, version: str = CONTRACT_VERSION) -> InputSpec:
        if version == "1.0":
            for name in FIELDS_SINCE_1_1:
                if name.split(".")[1] in data:
                    problem = "needs contract_version '1.1' (this card says '1.0')"
                    raise ContractError(name, problem, source)
        channels = data.get("channels", 3)
        if channels not in CHANNELS or isinstance(channels, bool):
            raise ContractError("input.channels", f"expected 1 or 3, got {channels!r}", source)
        color_order = _check_choice(data.get("color_order", "RGB"), COLOR_ORDERS, "input.color_order", source)
        if (color_order == "GRAY") != (channels == 1):
            expected = "GRAY" if channels == 1 else "RGB or BGR"
            raise ContractError(
                "input.color_order", f"a {channels}-channel input needs {expected}, got {color_order!r}", source
            )
        size = _require(data, "size", "input.", source)
        if not isinstance(size, (list, tuple)) or len(size) != 2 or any(INPUT_SIDE(s) for s in size):
            raise ContractError("input.size", f"expected [height, width], each {INPUT_SIDE}, got {size!r}", source)
        dtype = _check_choice(data.get("dtype", "float32"), INPUT_DTYPES, "input.dtype", source)
        scale, zero_point = data.get("scale"), data.get("zero_point")
        if dtype in ZERO_POINT and (scale is None or zero_point is None):
            raise ContractError("input.scale", f"an {dtype} input needs 'scale' and 'zero_point'", source)
        if scale is not None:
            _number(scale, QUANT_SCALE, "input.scale", source)
        if zero_point is not None:
            _number(zero_point, ZERO_POINT.get(dtype, ZERO_POINT["int8"]), "input.zero_point", source)
        mean = _numbers(data.get("mean", [0.0] * channels), channels, PIXEL_MEAN, "input.mean", source)
        std = _numbers(data.get("std", [1.0] * channels), channels, PIXEL_STD, "input.std", source)
        return cls(
            name=str(_require(data, "name", "input.", source)),
            height=size[0],
            width=size[1],
            layout=_check_choice(data.get("layout", "NCHW"), LAYOUTS, "input.layout", source),
            color_order=color_order,
            mean=mean,
            std=std,
            dtype=dtype,
            scale=None if scale is None else float(scale),
            zero_point=None if zero_point is None else int(zero_point),
            channels=channels,
            crop=CropSpec.from_dict(data["crop"], source) if "crop" in data else CropSpec(),
        )

    def to_dict(self, version: str = CONTRACT_VERSION) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "size": [self.height, self.width],
            "layout": self.layout,
            "color_order": self.color_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }
        if version != "1.0":  # 1.0 cards keep their exact bytes
            data["channels"] = self.channels
            data["crop"] = self.crop.to_dict()
        return data


@dataclass(frozen=True)
class HeadSpec:
    """One named output head.

    ``output`` is the model tensor the head reads; ``columns`` optionally selects a
    ``[start, stop)`` range of that tensor's last axis, for models that pack several heads
    into one tensor (e.g. 8 expression logits + valence + arousal in one output).
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    activation: str = "none"
    output: str = ""
    columns: tuple[int, int] | None = None
    clamp: tuple[float, float] | None = None

    @property
    def tensor(self) -> str:
        """Name of the model output tensor this head reads."""
        return self.output or self.name

    @classmethod
    def from_dict(cls, data: dict[str, Any], index: int, source: str | None = None) -> HeadSpec:
        where = f"heads[{index}]."
        name = str(_require(data, "name", where, source))
        where = f"heads[{index}] ({name})."
        labels = data.get("labels")
        if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) and x for x in labels):
            raise ContractError(f"{where}labels", "must be a non-empty list of label strings", source)
        if len(set(labels)) != len(labels):
            raise ContractError(f"{where}labels", "contains duplicates", source)
        kind = _check_choice(_require(data, "kind", where, source), HEAD_KINDS, f"{where}kind", source)
        activation = _check_choice(data.get("activation", "none"), ACTIVATIONS, f"{where}activation", source)
        clamp = data.get("clamp")
        if activation == "clamp" and clamp is None:
            raise ContractError(f"{where}clamp", "activation 'clamp' needs clamp: [low, high]", source)
        if clamp is not None:
            clamp = _numbers(clamp, 2, OUTPUT_BOUND, f"{where}clamp", source)
            if clamp[0] >= clamp[1]:
                problem = f"expected [low, high] with low < high, got {list(clamp)} (it pins every output to one value)"
                raise ContractError(f"{where}clamp", problem, source)
        if kind == "au_intensity":  # PSPI is computed from it: nothing may squeeze it below the 0-5 scale
            if activation not in ("none", "clamp"):
                problem = f"an au_intensity head needs activation 'none' or 'clamp' (0-5 scale), got {activation!r}"
                raise ContractError(f"{where}activation", problem, source)
            if clamp is not None and (clamp[0] > 0 or clamp[1] < 5):
                problem = f"must cover the 0-5 intensity scale (low <= 0, high >= 5), got {list(clamp)}"
                raise ContractError(f"{where}clamp", problem, source)
        columns = data.get("columns")
        if columns is not None and (
            not isinstance(columns, (list, tuple))
            or len(columns) != 2
            or any(COLUMN(c) for c in columns)
            or columns[1] - columns[0] != len(labels)
        ):
            raise ContractError(
                f"{where}columns",
                f"expected [start, stop) spanning {len(labels)} columns (one per label), got {columns!r}",
                source,
            )
        return cls(
            name=name,
            kind=kind,
            labels=tuple(labels),
            activation=activation,
            output=str(data.get("output", "")),
            columns=None if columns is None else (int(columns[0]), int(columns[1])),
            clamp=clamp,  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "labels": list(self.labels),
            "activation": self.activation,
            "output": self.tensor,
        }
        if self.columns is not None:
            data["columns"] = list(self.columns)
        if self.clamp is not None:
            data["clamp"] = list(self.clamp)
        return data


@dataclass(frozen=True)
class Provenance:
    """Where the weights came from. ``synthetic_demo`` marks weights trained on rendered faces."""

    source: str
    synthetic_demo: bool
    training_data: str = ""
    parent_sha256: str | None = None
    license: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> Provenance:
        synthetic = _require(data, "synthetic_demo", "provenance.", source)
        if not isinstance(synthetic, bool):
            raise ContractError("provenance.synthetic_demo", f"expected true or false, got {synthetic!r}", source)
        return cls(
            source=str(_require(data, "source", "provenance.", source)),
            synthetic_demo=synthetic,
            training_data=str(data.get("training_data", "")),
            parent_sha256=data.get("parent_sha256"),
            license=data.get("license"),
        )


@dataclass(frozen=True)
class ValidatedOn:
    """Where an exported artifact's fidelity gates were measured (``export.validated_on``, optional).

    INT8 accuracy depends on the CPU's int8 kernels (:mod:`edge_sdk.cpu`): the same file can pass its gates
    on an x86 box with VNNI and fail them on one without. The export writes this after validating the
    artifact, so a device can tell that the gates it ships with were measured on another kernel class.
    """

    kernels: str  # the int8 kernel class (a key of edge_sdk.cpu.INT8_KERNEL_CLASSES) the gates ran on
    cpu: str = ""  # the CPU model
    isa_flags: tuple[str, ...] = ()  # its ISA flags that matter (edge_sdk.cpu.ISA_FLAGS_THAT_MATTER)
    runtime: str = ""  # backend, version and device that ran the artifact, e.g. "onnxruntime 1.20.1 (CPU)"
    passed: bool | None = None  # every gate passed (None: not gated)
    metrics: dict[str, float | None] = field(default_factory=dict)  # the fidelity figures against FP32
    # other int8 kernel classes the gates also ran on, on the same CPU with its ISA capped (OpenVINO: oneDNN's
    # ONEDNN_MAX_CPU_ISA, edge_sdk_export.capped_isa) -> whether every gate passed there
    also_on: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "kernels": self.kernels,
            "cpu": self.cpu,
            "isa_flags": list(self.isa_flags),
            "runtime": self.runtime,
            "passed": self.passed,
            "metrics": dict(self.metrics),
        }
        if self.also_on:  # cards written before the field keep their exact bytes
            data["also_on"] = dict(self.also_on)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> ValidatedOn:
        where = "export.validated_on"
        data = _object(data, where, source)
        kernels = data.get("kernels")
        if not isinstance(kernels, str) or not kernels:
            raise ContractError(f"{where}.kernels", f"expected an int8 kernel class name, got {kernels!r}", source)
        for key in ("cpu", "runtime"):
            if not isinstance(data.get(key, ""), str):
                raise ContractError(f"{where}.{key}", f"expected a string, got {data[key]!r}", source)
        flags = data.get("isa_flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise ContractError(f"{where}.isa_flags", f"expected a list of flag names, got {flags!r}", source)
        passed = data.get("passed")
        if passed is not None and not isinstance(passed, bool):
            raise ContractError(f"{where}.passed", f"expected true, false or null, got {passed!r}", source)
        metrics = _object(data.get("metrics", {}), f"{where}.metrics", source)
        for name, value in metrics.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ContractError(f"{where}.metrics.{name}", f"expected a number or null, got {value!r}", source)
        also_on = _object(data.get("also_on", {}), f"{where}.also_on", source)
        for name, value in also_on.items():
            if not isinstance(value, bool):
                raise ContractError(f"{where}.also_on.{name}", f"expected true or false, got {value!r}", source)
        return cls(
            kernels=kernels,
            cpu=data.get("cpu", ""),
            isa_flags=tuple(flags),
            runtime=data.get("runtime", ""),
            passed=passed,
            metrics={str(k): None if v is None else float(v) for k, v in metrics.items()},
            also_on={str(k): v for k, v in also_on.items()},
        )


@dataclass(frozen=True)
class ExportInfo:
    """How this artifact was produced from its parent."""

    target: str | None = None
    precision: str = "fp32"
    pruning_ratio: float = 0.0
    calibration: dict[str, Any] | None = None
    tool: str | None = None
    # ONNX files with an embedded card: the sha256 of the model without its metadata (graph and weights,
    # edge_sdk.contract.onnx_metadata.weights_sha256), checked at load. It describes the file, not the
    # contract, so two cards that differ only here are equal.
    weights_sha256: str | None = field(default=None, compare=False)
    # Where the export measured this artifact's fidelity gates (written after validation; optional in every
    # contract version, absent from cards written before it). Like weights_sha256 it describes this file's
    # validation, not the contract, so it takes no part in equality.
    validated_on: ValidatedOn | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["weights_sha256"] is None:
            del data["weights_sha256"]  # cards written before the field keep their exact bytes
        if self.validated_on is None:
            del data["validated_on"]
        else:
            data["validated_on"] = self.validated_on.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> ExportInfo:
        weights = data.get("weights_sha256")
        if weights is not None and not (isinstance(weights, str) and _is_sha256(weights)):
            raise ContractError("export.weights_sha256", f"expected 64 hex digits, got {weights!r}", source)
        ratio = data.get("pruning_ratio", 0.0)
        if not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
            raise ContractError("export.pruning_ratio", f"expected a number in [0, 1), got {ratio!r}", source)
        return cls(
            target=data.get("target"),
            precision=_check_choice(data.get("precision", "fp32"), PRECISIONS, "export.precision", source),
            pruning_ratio=float(ratio),
            calibration=data.get("calibration"),
            tool=data.get("tool"),
            weights_sha256=None if weights is None else weights.lower(),
            validated_on=None
            if data.get("validated_on") is None
            else ValidatedOn.from_dict(data["validated_on"], source),
        )


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


@dataclass(frozen=True)
class ModelCard:
    """The full contract of one model artifact."""

    name: str
    input: InputSpec
    heads: tuple[HeadSpec, ...]
    provenance: Provenance
    export: ExportInfo = field(default_factory=ExportInfo)
    description: str = ""
    contract_version: str = CONTRACT_VERSION
    # sha256 per file name, for sidecar cards (the file a card is embedded in cannot hash itself).
    files: dict[str, str] = field(default_factory=dict)

    # ---- lookup -------------------------------------------------------------------------
    def head(self, kind: str) -> HeadSpec | None:
        """The first head of ``kind`` or None."""
        return next((h for h in self.heads if h.kind == kind), None)

    @property
    def output_tensors(self) -> tuple[str, ...]:
        """Model output tensors the heads read, in first-use order."""
        return tuple(dict.fromkeys(h.tensor for h in self.heads))

    @property
    def has_pain(self) -> bool:
        """True when PSPI can be computed: an AU-intensity head labels every PSPI action unit."""
        intensity = self.head("au_intensity")
        return intensity is not None and all(au in intensity.labels for au in PSPI_AUS)

    # ---- (de)serialisation ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> ModelCard:
        """Validate ``data`` and build a card; raises ContractError naming the bad field."""
        if not isinstance(data, dict):
            raise ContractError("<root>", f"expected a JSON object, got {type(data).__name__}", source)
        version = _require(data, "contract_version", "", source)
        if version not in SUPPORTED_CONTRACT_VERSIONS:
            raise ContractError(
                "contract_version",
                f"unsupported version {version!r}; this edge-sdk reads "
                f"{', '.join(sorted(SUPPORTED_CONTRACT_VERSIONS))}",
                source,
            )
        input_data = _object(_require(data, "input", "", source), "input", source)
        heads_data = _require(data, "heads", "", source)
        if not isinstance(heads_data, list) or not heads_data:
            raise ContractError("heads", "expected a non-empty list of heads", source)
        heads = tuple(HeadSpec.from_dict(h if isinstance(h, dict) else {}, i, source) for i, h in enumerate(heads_data))
        names = [h.name for h in heads]
        if len(set(names)) != len(names):
            raise ContractError("heads", f"head names must be unique, got {names}", source)
        files = data.get("files", {})
        if not isinstance(files, dict) or not all(isinstance(v, str) and len(v) == 64 for v in files.values()):
            raise ContractError("files", "expected {file name: sha256 hex}", source)
        card = cls(
            name=str(_require(data, "name", "", source)),
            input=InputSpec.from_dict(input_data, source, version),
            heads=heads,
            provenance=Provenance.from_dict(
                _object(_require(data, "provenance", "", source), "provenance", source), source
            ),
            export=ExportInfo.from_dict(_object(data.get("export", {}), "export", source), source),
            description=str(data.get("description", "")),
            contract_version=version,
            files=dict(files),
        )
        if card.head("pain") is not None and not card.has_pain:
            raise ContractError(
                "heads",
                f"a 'pain' head needs an au_intensity head labelling {', '.join(PSPI_AUS)}: "
                "edge-sdk only reports pain as PSPI derived from action units",
                source,
            )
        return card

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "contract_version": self.contract_version,
            "name": self.name,
            "description": self.description,
            "input": self.input.to_dict(self.contract_version),
            "heads": [h.to_dict() for h in self.heads],
            "provenance": asdict(self.provenance),
            "export": self.export.to_dict(),
        }
        if self.files:
            data["files"] = dict(self.files)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError("<root>", f"not valid JSON ({exc})", source) from None
        return cls.from_dict(data, source)

    def with_changes(self, **changes: Any) -> ModelCard:
        """A copy with top-level fields replaced (e.g. ``export=ExportInfo(...)``)."""
        return replace(self, **changes)

    # ---- checks against a loaded model ---------------------------------------------------
    def check_outputs(self, output_shapes: dict[str, tuple[int | None, ...]], source: str | None = None) -> None:
        """Check that every head's tensor exists and its last axis fits the head's labels."""
        for i, head in enumerate(self.heads):
            where = f"heads[{i}] ({head.name})"
            if head.tensor not in output_shapes:
                raise ContractError(
                    f"{where}.output",
                    f"the model has no output tensor {head.tensor!r}; it has {sorted(output_shapes)}",
                    source,
                )
            shape = output_shapes[head.tensor]
            width = shape[-1] if shape else None
            if not isinstance(width, int):
                continue  # dynamic last axis: checked at run time
            needed = head.columns[1] if head.columns else len(head.labels)
            if (head.columns is None and width != needed) or width < needed:
                raise ContractError(
                    f"{where}.labels",
                    f"{len(head.labels)} labels but output {head.tensor!r} has shape {list(shape)}",
                    source,
                )


def sidecar_path(artifact: str | Path) -> Path:
    """Where the sidecar card of ``artifact`` lives: ``model.tflite`` -> ``model.card.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.stem + SIDECAR_SUFFIX)
