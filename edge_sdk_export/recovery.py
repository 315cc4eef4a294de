"""Accuracy recovery for QDQ INT8 ONNX files: keep the fewest layers in float until every fidelity gate passes.

When the all-INT8 file (``quantize_qdq``'s output, whatever its scheme) misses a gate on the held-out faces,
:func:`recover_qdq`

1. ranks every quantized layer by the damage it does alone: the file with *every other* layer in float and only
   that one in INT8 is run on the held-out batch, and the error of the failing heads' post-processed outputs
   against FP32 (MSE / variance: continuous, where top-1 agreement moves one face at a time) orders the layers,
   most damaging first;
2. adds one layer in float per step until every gate passes or :data:`EXPLORE_FACTOR` x ``max_float_layers``
   (the budget) are kept: each step judges the next :data:`SEARCH_WIDTH` ranked layers *together with those
   already kept* and keeps the one closest to passing (then smallest error). Layers interact (a layer whose
   input another float layer already cleaned gains little), so a single-layer order alone can add layers that
   make it worse;
3. drops again every kept layer the gates do not need (backward pass), so the file keeps the *fewest* layers
   in float that the ranking found; a result over the budget fails, naming the count that would pass;
4. when that does not pass within the budget, ranks the layers again by *leave-one-layer-in-float* benefit
   (only that layer in float: layers that pass every gate alone first, then the smallest error; a layer that
   helps in no way is left out) and searches again; the better of the two is kept.

Why damage first: quantization noise entering early in a network is amplified by every layer after it, and a
tensor read by two layers stays INT8 while either reads it quantized, so keeping one early layer in float alone
often gains nothing measurable and the benefit order never reaches it. Measured on the pruned MobileNetV3-small
jetson proxy (AVX2 EPYC): the benefit order still failed with 30 float layers (VA CCC 0.961) while the damage
order, which put its first block on top, passed with 7; the pruned EfficientNet-lite's jetson proxy passed with
8 (benefit order: 0.0109 mean |dp| with 14); every other zoo file passed as before.

A *layer* is a node reading a ``DequantizeLinear`` output together with the element-wise activations that
follow it alone (``Conv -> Q -> DQ -> Relu``: TensorRT and ONNX Runtime fuse them; :func:`layer_nodes`). In
float it reads float inputs (the tensor before its ``QuantizeLinear``, through any Relu/Clip the quantizer
folded into that QuantizeLinear) and the FP32 parent's weights and bias (from the same BatchNorm-folded graph
``quantize_qdq`` quantized: the exporters pass the activation-equalized copy, :mod:`edge_sdk_export.equalize`, as
``parent``), and nothing is quantized between it and its activations. Every other tensor
keeps the scale and zero point of the all-INT8 file, so one calibration serves every variant and each trial
is one inference pass. A float layer's output is still quantized where an INT8 layer reads it; between two
float layers the tensor stays float.

The gates are the export's own (:mod:`edge_sdk_export.fidelity`) on the held-out batch the report uses: the
stopping rule *is* "every gate passes", so the search sees the set it is judged on. The budget bounds how
far it can fit that set, and the report lists every kept layer and its cost.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs, postprocess

logger = logging.getLogger(__name__)

# Default budget of --max-float-layers: recovery is on by default (it costs nothing when the gates pass) but
# bounded. A few float layers keep most of an INT8 file's size and speed; a model that needs more than eight
# (the demo's 20 layers on real faces: its error is spread over all of them, see the README) is better served
# by its FP32 file (``edge-sdk pick`` chooses it), and its failed row names every layer tried.
DEFAULT_MAX_FLOAT_LAYERS = 8
EVAL_BATCH = 64  # held-out rows per inference call
RANKING_SHOWN = 10  # most sensitive layers listed in the report
# Ranked layers judged at each step of the search, each together with the layers already kept. Measured on the
# pruned MobileNetV3-small cpu file (AVX2 EPYC): adding layers in single-layer order reached VA CCC 0.958 with 2
# float layers, then fell to 0.943 and never passed within 30.
SEARCH_WIDTH = 8
# The forward search may keep up to this many times the budget before the backward pass drops the layers the gates
# do not need: a set that passes only beyond the budget often shrinks back within it (the pruned EfficientNet-lite
# jetson proxy: no pass within 8 forward steps, a pass with 8 after exploring further).
EXPLORE_FACTOR = 2
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class RecoverySettings:
    """How a QDQ exporter recovers accuracy: the budget and the gates it must meet (all picklable)."""

    max_float_layers: int = DEFAULT_MAX_FLOAT_LAYERS  # 0: recovery off (the all-INT8 file is judged as is)
    gates: dict[str, Any] | None = None  # metric -> edge_sdk_export.fidelity.Gate; None: the default gates
    threads: int = 2
    latency_runs: int = 30  # batch-1 runs timing the cost of the float layers
    simulated: bool = False  # judge candidates unfused (edge_sdk.targets.Target.simulated_proxy: TensorRT files)


@dataclass(frozen=True)
class Trial:
    """One judged variant: the layers it keeps in float, its fidelity metrics and how far it is from passing."""

    float_layers: tuple[str, ...]
    metrics: dict[str, float | None]
    passed: bool
    deficit: float  # summed relative shortfall of the failing gates (0: every gate passes)
    error: float  # mean over heads of the post-processed outputs' MSE / variance against FP32
    failing: tuple[str, ...]  # the failing gates' messages
    failing_metrics: tuple[str, ...] = ()  # the failing gates' metric names

    def key(self) -> tuple[float, float]:
        """Sort key: closest to passing first, then smallest output error."""
        return (round(self.deficit, 9), self.error)


@dataclass(frozen=True)
class Recovery:
    """What recovery did to one QDQ file (``to_check`` is its entry in the report row's ``checks``)."""

    budget: int
    baseline: Trial  # the all-INT8 file
    final: Trial  # the file written (== baseline when nothing was kept in float)
    tried: tuple[str, ...] = ()  # layers kept in float at some step, in the order the search added them
    ranking: tuple[dict[str, Any], ...] = ()  # the most sensitive layers, one-at-a-time in float
    cost: dict[str, Any] = field(default_factory=dict)  # size/latency of the mixed file vs the all-INT8 one
    evaluations: int = 0
    seconds: float = 0.0
    best: Trial | None = None  # when the budget was hit: the closest variant tried (not shipped)
    float_nodes: tuple[str, ...] = ()  # every node running in float: the layers and their activations

    @property
    def needed(self) -> bool:
        return not self.baseline.passed

    @property
    def passed(self) -> bool:
        return self.final.passed

    @property
    def float_layers(self) -> tuple[str, ...]:
        return self.final.float_layers

    @property
    def reason(self) -> str | None:
        """Why the gates still fail after recovery (None when they pass or recovery was not needed)."""
        if not self.needed or self.passed:
            return None
        if self.budget <= 0:
            return None  # recovery off: the gates' own messages say everything
        tried = ", ".join(self.tried) or "none (no layer left in float improved the gates)"
        closest = self.best or self.final
        best = "; ".join(closest.failing) or "-"
        return (
            f"accuracy recovery hit its budget (--max-float-layers {self.budget}) without passing every gate; "
            f"layers tried in float: {tried}; closest ({len(closest.float_layers)} in float): {best}. "
            "The all-INT8 file was kept. Raise --max-float-layers, relax the gate (--gate), or use the FP32 file"
        )

    def note(self) -> str | None:
        """One line for the report row's notes."""
        if not self.needed:
            return None
        if self.budget <= 0:
            return "accuracy recovery is off (--max-float-layers 0): the all-INT8 file is judged as is"
        if not self.passed:
            return None  # the row's reason says it
        cost = self.cost
        note = (
            f"kept {len(self.float_layers)} layer(s) in float to pass every gate: {', '.join(self.float_layers)} "
            f"(+{cost.get('size_delta_bytes', 0):,} bytes, latency {cost.get('latency_ratio', '?')}x the all-INT8 "
            "file)"
        )
        if cost.get("slower_than_fp32"):
            note += (
                f"; at {cost['latency_ms']} ms it is slower than the FP32 parent ({cost['fp32_latency_ms']} ms) on "
                "this runtime: deploy FP32 here (edge-sdk pick chooses it)"
            )
        return note

    def to_check(self) -> dict[str, Any]:
        """JSON-ready summary for the report row's ``checks['recovery']``."""
        if not self.needed:
            return {"needed": False, "max_float_layers": self.budget, "float_layers": []}
        return {
            "needed": self.needed,
            "passed": self.passed,
            "max_float_layers": self.budget,
            "float_layers": list(self.float_layers),
            "float_nodes": list(self.float_nodes),
            "tried": list(self.tried),
            "all_int8_metrics": dict(self.baseline.metrics),
            "metrics": dict(self.final.metrics),
            "closest_metrics": None if self.best is None else dict(self.best.metrics),
            "sensitivity": list(self.ranking),
            "cost": dict(self.cost),
            "evaluations": self.evaluations,
            "seconds": round(self.seconds, 1),
        }


# ---- graph surgery -----------------------------------------------------------------------------
# Element-wise activations that belong to the layer before them (TensorRT and ONNX Runtime fuse them): a layer
# kept in float keeps them in float too, and the tensor between the two is not quantized.
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "PRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Elu", "Selu")


def _consumers(model: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def layer_nodes(model: Any, layer: str) -> list[str]:
    """``layer`` and the activations that follow it alone (``Conv -> [Q -> DQ ->] Relu``): the nodes that run
    in float when the layer does."""
    consumers = _consumers(model)
    outputs = {o.name for o in model.graph.output}
    nodes = {n.name: n for n in model.graph.node}
    chain = [layer]
    node = nodes[layer]
    while len(node.output) == 1 and node.output[0] not in outputs:
        readers = consumers.get(node.output[0], [])
        if len(readers) == 1 and readers[0].op_type == "QuantizeLinear":  # through Q -> DQ(s)
            dqs = consumers.get(readers[0].output[0], [])
            if not dqs or any(d.op_type != "DequantizeLinear" or d.output[0] in outputs for d in dqs):
                break
            readers = [r for d in dqs for r in consumers.get(d.output[0], [])]
        if len(readers) != 1 or readers[0].op_type not in ACTIVATIONS or not readers[0].name:
            break
        node = readers[0]
        chain.append(node.name)
    return chain


def quantized_layers(model: Any) -> list[str]:
    """Names of the layers that can go float, in graph order: nodes that read at least one DequantizeLinear
    output, less the activations that belong to the layer before them (:func:`layer_nodes`). Unnamed nodes
    are skipped: a kept layer must be nameable in the report."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names = []
    for node in model.graph.node:
        if node.op_type in QDQ_OPS or not node.name:
            continue
        if any(getattr(producers.get(i), "op_type", None) == "DequantizeLinear" for i in node.input):
            names.append(node.name)
    names = list(dict.fromkeys(names))
    absorbed = {n for name in names if name for n in layer_nodes(model, name)[1:]}
    return [n for n in names if n not in absorbed]


# Activations ONNX Runtime's QDQ quantizer may fold into the preceding QuantizeLinear (its range clips them);
# a layer taken back to float must apply them itself.
FOLDED_ACTIVATIONS = ("Relu", "Clip")


class FloatReference:
    """The FP32 graph ``quantize_qdq`` quantized: the parent after onnxruntime's ``quant_pre_process``
    (BatchNorm folded into Conv), matched to the QDQ file by node name.

    It gives a float layer its FP32 weights and the activations the quantizer folded away (a Relu whose
    clipping the uint8 QuantizeLinear does instead). Without it (``None``) float layers use their
    dequantized INT8 constants and read the tensor before its QuantizeLinear as is.
    """

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        self.nodes = {node.name: node for node in model.graph.node if node.name}
        self.producers = {out: node for node in model.graph.node for out in node.output}

    @classmethod
    def of(cls, parent: Path) -> FloatReference | None:
        """Rebuild the prepared graph of ``parent`` (None, logged, when onnxruntime cannot)."""
        from edge_sdk_export.quant_onnx import prepare_for_quantization

        try:
            with tempfile.TemporaryDirectory(prefix="edge-sdk-recovery-") as tmp:
                return cls(prepare_for_quantization(parent, Path(tmp) / "prepared.onnx"))
        except Exception as exc:  # onnxruntime raises several types; recovery still works from the QDQ file
            logger.warning("recovery: FP32 graph of %s unavailable (%s); float layers use INT8 weights", parent, exc)
            return None

    def constant(self, layer: str, index: int) -> np.ndarray | None:
        """The FP32 constant input ``index`` of ``layer`` (None: not a constant there, or no such layer)."""
        node = self.nodes.get(layer)
        if node is None or index >= len(node.input):
            return None
        return self.inits.get(node.input[index])

    def folded(self, layer: str, index: int, producer: str | None) -> list[Any] | None:
        """The FP32 nodes between ``producer`` (the node writing the quantized tensor; None: a graph input) and
        input ``index`` of ``layer`` that the QDQ file folded away, first to last ([] when none; None when the
        two graphs do not line up there, or a folded node has a non-constant extra input)."""
        node = self.nodes.get(layer)
        if node is None or index >= len(node.input):
            return None
        chain: list[Any] = []
        source = self.producers.get(node.input[index])
        while source is not None and source.name != producer:
            if source.op_type not in FOLDED_ACTIVATIONS or any(i and i not in self.inits for i in source.input[1:]):
                return None
            chain.insert(0, source)
            source = self.producers.get(source.input[0])
        if source is None and producer is not None:
            return None
        return chain


def _dequantize(dq: Any, inits: dict[str, np.ndarray]) -> np.ndarray:
    """The float value of a DequantizeLinear of constants (per-tensor or per-axis)."""
    data = inits[dq.input[0]].astype(np.float32)
    scale = inits[dq.input[1]].astype(np.float32)
    zero = inits[dq.input[2]].astype(np.float32) if len(dq.input) > 2 and dq.input[2] in inits else np.float32(0)
    if scale.ndim == 1 and scale.size > 1:
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % data.ndim
        shape = [1] * data.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
        zero = np.reshape(zero, shape) if np.ndim(zero) else zero
    return ((data - zero) * scale).astype(np.float32)


def keep_in_float(model: Any, layers: Collection[str], reference: FloatReference | None = None) -> Any:
    """A copy of the QDQ ``model`` with ``layers`` (node names, each with its activations: :func:`layer_nodes`)
    reading float inputs and FP32 weights.

    Activation inputs bypass their DequantizeLinear(QuantizeLinear(x)) and read ``x`` (through a copy of any
    Relu/Clip the quantizer folded into that QuantizeLinear); constant inputs (weights, biases) become FP32
    initializers from ``reference`` when the shapes agree, else the dequantized constant. Q/DQ nodes and
    initializers left unused are removed.
    """
    import onnx
    from onnx import helper, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    unknown = set(layers) - {n.name for n in graph.node}
    if unknown:
        raise ValueError(f"no such layer(s) in the model: {', '.join(sorted(unknown))}")
    wanted = {n for layer in layers for n in layer_nodes(model, layer)}
    inits = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    taken = set(inits) | {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    node_names = {n.name for n in graph.node}
    added: list[Any] = []
    inserted: dict[str, list[Any]] = {}  # node name -> folded activations to insert before it
    for node in graph.node:
        if node.name not in wanted:
            continue
        for index, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            if dq.input[0] in inits:
                value = _dequantize(dq, inits)
                fp32 = None if reference is None else reference.constant(node.name, index)
                if fp32 is not None and fp32.shape == value.shape:
                    value = fp32.astype(np.float32)
                fresh = _unique(f"{name}_fp32", taken)
                added.append(numpy_helper.from_array(value, fresh))
                node.input[index] = fresh
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue
            tensor = q.input[0]
            writer = producers.get(tensor)
            chain = [] if reference is None else reference.folded(node.name, index, writer.name if writer else None)
            for act in chain or []:
                extra = []
                for const in act.input[1:]:
                    if not const:
                        extra.append("")
                        continue
                    fresh = _unique(f"{act.name}_{const}_fp32", taken)
                    added.append(numpy_helper.from_array(reference.inits[const], fresh))  # type: ignore[union-attr]
                    extra.append(fresh)
                out = _unique(f"{act.name}_fp32_out", taken)
                attrs = {a.name: helper.get_attribute_value(a) for a in act.attribute}
                name_ = _unique(f"{act.name}_fp32", node_names)
                inserted.setdefault(node.name, []).append(
                    helper.make_node(act.op_type, [tensor, *extra], [out], name=name_, **attrs)
                )
                tensor = out
            node.input[index] = tensor
    graph.initializer.extend(added)
    if inserted:
        ordered = []
        for node in graph.node:
            ordered += inserted.get(node.name, []) + [node]
        del graph.node[:]
        graph.node.extend(ordered)
    _drop_unused(graph)
    return copy


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}{n}"
    taken.add(candidate)
    return candidate


def _drop_unused(graph: Any) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads (repeatedly), then initializers nothing reads."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type in QDQ_OPS and not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


# ---- judging variants --------------------------------------------------------------------------
def _head_kinds(metric: str) -> tuple[str, ...]:
    """The head kinds a gate's metric is measured on (by name; () when unknown: every head counts)."""
    for prefix, kinds in (
        ("expression", ("expression",)),
        ("au_occurrence", ("au_occurrence",)),
        ("au_intensity", ("au_intensity",)),
        ("pspi", ("au_intensity",)),
        ("va_", ("valence_arousal",)),
        ("valence", ("valence_arousal",)),
        ("arousal", ("valence_arousal",)),
    ):
        if metric.startswith(prefix):
            return kinds
    return ()


class _Judge:
    """Runs variants of a QDQ file on the held-out batch and judges them with the export's gates."""

    def __init__(
        self,
        card: ModelCard,
        heldout: np.ndarray,
        ref: HeadOutputs,
        settings: RecoverySettings,
        work: Path,
        outputs: Callable[[Any], HeadOutputs] | None = None,
    ) -> None:
        """``outputs(candidate)``: its raw head outputs on ``heldout`` (default: an in-memory ONNX model through
        ONNX Runtime, :meth:`onnx_outputs`); the TFLite and OpenVINO searches judge files on their runtimes."""
        from edge_sdk_export.fidelity import DEFAULT_GATES

        self.card = card
        self.heldout = heldout
        self.ref = ref
        self.ref_post = postprocess(card, ref)
        self.gates = dict(DEFAULT_GATES if settings.gates is None else settings.gates)
        self.threads = settings.threads
        self.options = {"optimize": False} if settings.simulated else {}
        self.work = work
        self.count = 0
        self.focus: set[str] = set()  # heads the error is measured on (empty: every head)
        self.outputs = outputs or self.onnx_outputs

    def focus_on(self, trial: Trial) -> None:
        """Measure the output error on the heads of ``trial``'s failing gates only (what recovery must fix)."""
        kinds = {
            kind for g in self.gates.values() if g.metric in trial.failing_metrics for kind in _head_kinds(g.metric)
        }
        self.focus = {h.name for h in self.card.heads if h.kind in kinds}

    def onnx_outputs(self, model: Any) -> HeadOutputs:
        """Raw head outputs of ``model`` (in memory) on the held-out batch, through the artifact's backend."""
        import onnx

        from edge_sdk.backend import load_backend

        path = self.work / "recovery-candidate.onnx"
        onnx.save(model, str(path))
        from edge_sdk_export.fidelity import head_outputs

        backend = load_backend(path, card=self.card, threads=self.threads, **self.options)
        return head_outputs(backend, self.heldout, EVAL_BATCH)

    def judge(self, model: Any, layers: Sequence[str]) -> Trial:
        from edge_sdk_export.fidelity import apply_gates, compare, gate_score

        self.count += 1
        raw = self.outputs(model)
        metrics = compare(self.card, self.ref, raw)
        passed, results = apply_gates(metrics, self.gates)
        deficit = 1.0 - gate_score(metrics, self.gates)
        post = postprocess(self.card, raw)
        errors = []
        for name, ref in self.ref_post.items():
            if self.focus and name not in self.focus and not (name == "pspi" and "au_intensity" in self.focus):
                continue
            variance = float(np.var(ref)) + 1e-8
            errors.append(float(np.mean((post[name] - ref) ** 2)) / variance)
        failing = tuple(r.message for r in results if r.status == "fail")
        error = float(np.mean(errors)) if errors else 0.0
        metrics_failing = tuple(r.metric for r in results if r.status == "fail")
        return Trial(tuple(layers), metrics, passed, deficit, error, failing, metrics_failing)


# ---- the search --------------------------------------------------------------------------------
def recover_qdq(
    path: Path,
    parent: Path,
    card: ModelCard,
    heldout: np.ndarray,
    heldout_ref: HeadOutputs,
    settings: RecoverySettings,
    work: Path,
) -> Recovery:
    """Judge the QDQ file at ``path``; when a gate fails, keep the fewest layers in float that pass every gate
    (within ``settings.max_float_layers``) and rewrite ``path`` with them (card re-embedded).

    ``parent`` is the FP32 ONNX the file was quantized from (for the float layers' weights), ``heldout`` the
    preprocessed held-out batch and ``heldout_ref`` the parent's raw outputs on it. When the budget is hit
    without passing, ``path`` is left all-INT8 and :attr:`Recovery.reason` says what was tried.
    """
    import onnx

    from edge_sdk_export.onnx_card import set_card

    start = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    judge = _Judge(card, heldout, heldout_ref, settings, work)
    model = onnx.load(str(path))
    baseline = judge.judge(model, ())
    budget = max(0, int(settings.max_float_layers))
    if baseline.passed or budget == 0:
        return Recovery(budget, baseline, baseline, evaluations=judge.count, seconds=time.perf_counter() - start)
    logger.info("recovery: all-INT8 misses %s; ranking layers left in float", "; ".join(baseline.failing))
    judge.focus_on(baseline)
    baseline = judge.judge(model, ())  # its error on the failing heads only
    floats = FloatReference.of(parent)

    def trial_of(layers: list[str]) -> Trial:
        return judge.judge(keep_in_float(model, layers, floats), layers)

    best, tried, ranking = find_float_layers(quantized_layers(model), trial_of, baseline, budget)
    if not best.passed:
        logger.warning("recovery: budget of %d float layers hit without passing every gate", budget)
        # Ship the all-INT8 file: a slower file that still fails buys nothing; the best variant is reported.
        seconds = time.perf_counter() - start
        return Recovery(budget, baseline, baseline, tried, ranking, {}, judge.count, seconds, best=best)
    int8_copy = work / f"{path.stem}.all_int8.onnx"
    int8_copy.write_bytes(path.read_bytes())
    mixed = keep_in_float(model, best.float_layers, floats)
    set_card(mixed, card, indent=None)
    onnx.save(mixed, str(path))
    cost = _cost(int8_copy, path, parent, card, heldout, settings)
    logger.info("recovery: kept in float %s (%s)", ", ".join(best.float_layers), cost)
    nodes = tuple(dict.fromkeys(n for layer in best.float_layers for n in layer_nodes(model, layer)))
    seconds = time.perf_counter() - start
    return Recovery(budget, baseline, best, tried, ranking, cost, judge.count, seconds, float_nodes=nodes)


def find_float_layers(
    layers: Sequence[str], judge_variant: Callable[[list[str]], Trial], baseline: Trial, budget: int
) -> tuple[Trial, tuple[str, ...], tuple[dict[str, Any], ...]]:
    """The whole search of :func:`recover_qdq` over ``layers``, whatever judges them (``judge_variant(kept)`` judges
    the file with ``kept`` in float; the TFLite recovery passes its own): damage order first, benefit order when
    that does not pass within ``budget`` (see the module docstring). Returns the trial kept (passing within the
    budget, or the closest: a pass over the budget is returned failing, its message naming the count), the layers
    its search tried in order, and the report's ``sensitivity`` entries (the damage ranking). Each layer set is
    judged once (the two orders and the backward pass meet the same sets)."""
    judged: dict[tuple[str, ...], Trial] = {}

    def trial_of(kept: list[str]) -> Trial:
        key = tuple(kept)
        if key not in judged:
            judged[key] = judge_variant(kept)
        return judged[key]

    explore = budget * EXPLORE_FACTOR
    damage = {name: trial_of([other for other in layers if other != name]) for name in layers}
    by_damage = rank_by_damage(damage)
    best, tried = search_float_layers(by_damage, trial_of, baseline, explore)
    if not _within(best, budget):
        logger.info("recovery: the damage order found no set within %d layers; trying the benefit order", budget)
        singles = {name: trial_of([name]) for name in layers}
        other, other_tried = search_float_layers(rank_layers(singles, baseline), trial_of, baseline, explore)
        if _preference(other, budget) < _preference(best, budget):
            best, tried = other, other_tried
    if best.passed and not _within(best, budget):
        count = len(best.float_layers)
        message = f"passes every gate only with {count} layers in float, over the budget (--max-float-layers {budget})"
        best = replace(best, passed=False, failing=(message,))
    ranking = tuple(
        {"layer": name, "error_alone_in_int8": round(damage[name].error, 6)} for name in by_damage[:RANKING_SHOWN]
    )
    return best, tried, ranking


def _within(trial: Trial, budget: int) -> bool:
    return trial.passed and len(trial.float_layers) <= budget


def _preference(trial: Trial, budget: int) -> tuple[bool, bool, int, tuple[float, float]]:
    """Sort key between searches: a pass within the budget, then any pass (fewest layers), then closest."""
    return (not _within(trial, budget), not trial.passed, len(trial.float_layers) if trial.passed else 0, trial.key())


def rank_by_damage(damage: dict[str, Trial]) -> list[str]:
    """Layer names by the error of the file with only that layer in INT8 (``damage``: every other layer in
    float), most damaging first; a variant that could not be built (infinite error) is left out."""
    return sorted((name for name in damage if math.isfinite(damage[name].error)), key=lambda n: -damage[n].error)


def rank_layers(singles: dict[str, Trial], baseline: Trial) -> list[str]:
    """Layer names by their one-at-a-time trials (``singles``): passing alone first, then the smallest error on the
    failing heads (top-1 agreement moves one face at a time, so the continuous error ranks layers more steadily
    than the gates' shortfall); a layer that helps in no way against ``baseline`` is left out."""
    return [
        name
        for name in sorted(singles, key=lambda n: (not singles[n].passed, singles[n].error))
        if singles[name].key() < baseline.key() or singles[name].error < baseline.error
    ]


def search_float_layers(
    ranked: Sequence[str], trial_of: Callable[[list[str]], Trial], baseline: Trial, budget: int
) -> tuple[Trial, tuple[str, ...]]:
    """The search of :func:`recover_qdq` over layer names, whatever judges them: ``trial_of(layers)`` judges the
    file with ``layers`` in float. Forward: one more layer per step, the best of the next :data:`SEARCH_WIDTH`
    ``ranked`` ones judged with those kept, until a trial passes or ``budget`` layers are kept; backward (when one
    passed): each kept layer the gates do not need is dropped. Returns the best trial (passing, or the closest)
    and every layer kept at some step, in order."""
    kept: list[str] = []
    best = baseline
    while len(kept) < min(budget, len(ranked)):
        pool = [name for name in ranked if name not in kept][:SEARCH_WIDTH]
        trial = min((trial_of([*kept, name]) for name in pool), key=lambda t: (not t.passed, t.key()))
        if not math.isfinite(trial.error):  # no candidate could be built (a converter refused them all)
            break
        kept = list(trial.float_layers)
        logger.info("recovery: %d in float (+%s): %s", len(kept), kept[-1], "pass" if trial.passed else trial.failing)
        if trial.key() <= best.key() or trial.passed:
            best = trial
        if trial.passed:
            break
    if best.passed:
        for name in reversed(best.float_layers[:-1]):  # the last one added was needed to pass
            fewer = [n for n in best.float_layers if n != name]
            trial = trial_of(fewer)
            if trial.passed:
                logger.info("recovery: %s not needed after all", name)
                best = trial
    return best, tuple(kept)


def _cost(
    int8: Path, mixed: Path, parent: Path, card: ModelCard, x: np.ndarray, settings: RecoverySettings
) -> dict[str, Any]:
    """Size and batch-1 latency (p50, runs interleaved, same runtime and threads) of the mixed file against the
    all-INT8 one, and against the FP32 parent: on ONNX Runtime CPU a float layer also un-fuses the INT8 layer
    feeding it, so a few float layers can cost more than the rest of the model."""
    from edge_sdk.backend import load_backend

    files = {"all_int8": (int8, card), "mixed": (mixed, card), "fp32": (parent, None)}
    backends = {k: load_backend(path, card=c, threads=settings.threads) for k, (path, c) in files.items()}
    return mixed_cost(backends, int8, mixed, x, settings.latency_runs)


def mixed_cost(backends: dict[str, Any], int8: Path, mixed: Path, x: np.ndarray, runs: int) -> dict[str, Any]:
    """Sizes of the two files and batch-1 p50 latency of ``backends`` ("all_int8", "mixed", optionally "fp32"),
    runs interleaved after 3 warm-up rounds, as the report's recovery cost."""
    one = x[:1]
    times: dict[str, list[float]] = {k: [] for k in backends}
    for run in range(3 + max(3, runs)):
        for name, backend in backends.items():
            t0 = time.perf_counter()
            backend.run(one)
            if run >= 3:  # warm-up
                times[name].append((time.perf_counter() - t0) * 1000)
    ms = {k: round(float(np.median(v)), 3) for k, v in times.items()}
    size_int8, size = int8.stat().st_size, mixed.stat().st_size
    cost: dict[str, Any] = {
        "size_bytes_all_int8": size_int8,
        "size_bytes": size,
        "size_delta_bytes": size - size_int8,
        "latency_ms_all_int8": ms["all_int8"],
        "latency_ms": ms["mixed"],
        "latency_ratio": round(ms["mixed"] / ms["all_int8"], 3) if ms["all_int8"] else None,
    }
    if "fp32" in ms:
        cost |= {"fp32_latency_ms": ms["fp32"], "slower_than_fp32": ms["mixed"] > ms["fp32"]}
    return cost
