"""Activation equalization (edge_sdk_export.equalize) on a hand-built ONNX net with badly spread channels:
the FP32 function is unchanged, the pairs found are the rescalable ones, and real INT8 (onnxruntime QDQ) of the
equalized graph is closer to FP32 than INT8 of the original."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge_sdk_export.equalize import equalize_activations, equalize_file, find_pairs  # noqa: E402

WIDE = 12  # channels of the expansion


def _net(seed: int = 0) -> onnx.ModelProto:
    """image -> conv (some output channels 100x the others) -> PRelu -> depthwise -> PRelu -> 1x1 -> Relu ->
    conv -> Clip (ReLU6) -> conv -> (added to itself: a tensor read twice) -> pooled output."""
    rng = np.random.default_rng(seed)
    spread = np.where(np.arange(WIDE) % 4 == 0, 4.0, 0.04).astype(np.float32)  # 100x between channel groups
    inits = {
        "w0": rng.normal(0, 0.3, (WIDE, 3, 3, 3)).astype(np.float32) * spread[:, None, None, None],
        "b0": rng.normal(0, 0.1, WIDE).astype(np.float32) * spread,
        "a0": np.full((WIDE, 1, 1), 0.2, np.float32),
        "w1": rng.normal(0, 0.5, (WIDE, 1, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, WIDE).astype(np.float32),
        "a1": rng.uniform(0.05, 0.3, (WIDE, 1, 1)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (8, WIDE, 1, 1)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 8).astype(np.float32),
        "w3": rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32),
        "b3": np.zeros(8, np.float32),
        "w4": rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(6.0, np.float32),
    }
    pad = [1, 1, 1, 1]
    nodes = [
        helper.make_node("Conv", ["image", "w0", "b0"], ["c0"], name="conv0", pads=pad),
        helper.make_node("PRelu", ["c0", "a0"], ["p0"], name="prelu0"),
        helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"], name="dw1", pads=pad, group=WIDE),
        helper.make_node("PRelu", ["c1", "a1"], ["p1"], name="prelu1"),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="project2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3", pads=pad),
        helper.make_node("Clip", ["c3", "lo", "hi"], ["k3"], name="clip3"),  # bounded ReLU: a capped pair
        helper.make_node("Conv", ["k3", "w4"], ["c4"], name="conv4"),
        helper.make_node("Add", ["c4", "c4"], ["s4"], name="twice"),
        helper.make_node("GlobalAveragePool", ["s4"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["out"], name="flat"),
    ]
    return _model(nodes, inits, "spread")


def _model(nodes: list[Any], inits: dict[str, np.ndarray], name: str) -> onnx.ModelProto:
    """image [N, 3, 16, 16] -> ``nodes`` -> out [N, 4], opset 17, checked."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _batch(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, 16, 16)).astype(np.float32)


def _run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def test_pairs_are_the_rescalable_ones() -> None:
    pairs = {(p.first.name, p.second.name, p.depthwise, p.bound) for p in find_pairs(_net())}
    # conv4's output is read twice (by one Add) and by no Conv.
    assert pairs == {
        ("conv0", "dw1", True, None),
        ("dw1", "project2", False, None),
        ("project2", "conv3", False, None),
        ("conv3", "conv4", False, 6.0),
    }


def test_function_kept_and_spread_reduced() -> None:
    model, x = _net(), _batch(64, 1)
    before = _run(model, x)
    result = equalize_activations(model, "image", _batch(96, 2))
    after = _run(model, x)
    assert result.pairs == 4
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5 * float(np.abs(before).max()))
    assert result.spread_before > 30  # the 100x channel groups (median over the four pairs)
    assert result.spread_after < result.spread_before / 5


def _card() -> Any:
    from edge_sdk.contract.card import ModelCard

    return ModelCard.from_dict(
        {
            "contract_version": "1.0",
            "name": "equalize-fixture",
            "description": "conv net with 100x channel spread",
            "input": {"name": "image", "size": [16, 16], "layout": "NCHW", "mean": [0.5] * 3, "std": [0.5] * 3},
            "heads": [{"name": "expression", "kind": "expression", "output": "out", "labels": ["a", "b", "c", "d"]}],
            "provenance": {"source": "tests/test_equalize.py", "synthetic_demo": False, "training_data": "none"},
            "export": {"precision": "fp32", "tool": "onnx.helper"},
        }
    )


def _qdq(src: Path, dst: Path, calib: np.ndarray) -> Path:
    """The cpu target's quantizer (edge_sdk_export.quant_onnx, ORT_CPU_SCHEME) on ``src``."""
    from edge_sdk_export.quant_onnx import ORT_CPU_SCHEME, quantize_qdq

    return quantize_qdq(src, dst, _card(), calib, ORT_CPU_SCHEME)


def test_int8_of_the_equalized_graph_is_closer_to_fp32(tmp_path: Path) -> None:
    original = tmp_path / "original.onnx"
    onnx.save(_net(), str(original))
    calib, x = _batch(96, 2), _batch(64, 3)
    equalized = tmp_path / "equalized.onnx"
    equalize_file(original, equalized, "image", calib)
    reference = _run(original, x)

    def error(fp32: Path) -> float:
        int8 = _run(_qdq(fp32, tmp_path / f"{fp32.stem}_int8.onnx", calib), x)
        return float(np.sqrt(np.mean((int8 - reference) ** 2)) / reference.std())

    plain, better = error(original), error(equalized)
    assert better < 0.75 * plain, (plain, better)  # measured 0.065 -> 0.031 (cpu scheme, Xeon)


def test_embedded_card_follows_the_new_weights(tmp_path: Path) -> None:
    """A carded parent stays loadable after equalization: its card's weights hash is rewritten (the runtime
    refuses a file whose weights no longer match its card)."""
    from edge_sdk.backend import load_backend
    from edge_sdk_export.onnx_card import set_card

    model = _net()
    card = _card()
    set_card(model, card)
    parent, equalized = tmp_path / "parent.onnx", tmp_path / "equalized.onnx"
    onnx.save(model, str(parent))
    x = _batch(32, 2)
    assert equalize_file(parent, equalized, "image", x).pairs == 4
    # compared on the calibration rows: across a Clip the function is kept there (and up to twice their range)
    np.testing.assert_allclose(
        load_backend(equalized, threads=1).run(x)["expression"],
        load_backend(parent, threads=1).run(x)["expression"],
        rtol=1e-4,
        atol=1e-5,
    )


def test_shared_weights_are_left_alone() -> None:
    """A weight read by two nodes cannot be rescaled for one of them: that pair is skipped, the function kept."""
    model = _net()
    model.graph.node.append(helper.make_node("Conv", ["image", "w0", "b0"], ["c0_again"], name="conv0_again"))
    model.graph.output.append(helper.make_tensor_value_info("c0_again", TensorProto.FLOAT, None))
    pairs = {(p.first.name, p.second.name) for p in find_pairs(model)}
    assert pairs == {("dw1", "project2"), ("project2", "conv3"), ("conv3", "conv4")}
    x = _batch(16, 4)
    before = _run(model, x)
    equalize_activations(model, "image", _batch(32, 2))
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-4, atol=1e-5 * float(np.abs(before).max()))


def test_a_changed_function_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rescaling through a Clip as if it were positive-homogeneous (its bound ignored) changes the model: the
    export's faithfulness check refuses the copy (the exporter then quantizes the parent as it is)."""
    import edge_sdk_export.equalize as equalize
    from edge_sdk.errors import ArtifactError
    from edge_sdk_export.onnx_card import set_card

    model = _net()
    set_card(model, _card())
    parent = tmp_path / "parent.onnx"
    onnx.save(model, str(parent))
    calib = _batch(32, 2)
    equalize.equalize_for_int8(parent, tmp_path / "fine.onnx", _card(), calib, fold_batchnorm=True)  # passes
    monkeypatch.setattr(equalize, "HOMOGENEOUS", (*equalize.HOMOGENEOUS, "Clip"))
    monkeypatch.setattr(equalize, "clip_bound", lambda node, inits: None)
    with pytest.raises(ArtifactError, match="activation equalization.*not faithful"):
        equalize.equalize_for_int8(parent, tmp_path / "broken.onnx", _card(), calib, fold_batchnorm=False)


def _relu6_net(constant_nodes: bool = False) -> onnx.ModelProto:
    """image -> conv (a quarter of the channels 100x the others, and those pass 6) -> ReLU6 -> conv -> output;
    ``constant_nodes``: the Clip's bounds are Constant nodes (as torch.onnx exports ReLU6), not initializers."""
    rng = np.random.default_rng(5)
    spread = np.where(np.arange(WIDE) % 4 == 0, 8.0, 0.08).astype(np.float32)
    inits = {
        "w0": rng.normal(0, 0.5, (WIDE, 3, 3, 3)).astype(np.float32) * spread[:, None, None, None],
        "w1": rng.normal(0, 0.3, (4, WIDE, 1, 1)).astype(np.float32),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(6.0, np.float32),
    }
    bounds = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(inits.pop(name), name))
        for name in (("lo", "hi") if constant_nodes else ())
    ]
    nodes = [
        *bounds,
        helper.make_node("Conv", ["image", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c0", "lo", "hi"], ["k0"], name="relu6"),
        helper.make_node("Conv", ["k0", "w1"], ["c1"], name="conv1"),
        helper.make_node("GlobalAveragePool", ["c1"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["out"], name="flat"),
    ]
    return _model(nodes, inits, "relu6")


@pytest.mark.parametrize("constant_nodes", [False, True])
def test_relu6_pair_keeps_what_the_clip_cuts(constant_nodes: bool) -> None:
    """Across a ReLU6 the scales are capped so no channel's calibration range passes 6 after rescaling: the
    saturating channels are left as they are, the narrow ones widened, the function on the calibration crops the
    same (the Clip cuts exactly what it cut before)."""
    from edge_sdk_export.equalize import channel_ranges

    model, calib = _relu6_net(constant_nodes), _batch(96, 2)
    before = _run(model, calib)
    ranges_before = channel_ranges(model, ["k0"], "image", calib)["k0"]
    assert (ranges_before >= 6.0).sum() >= 1 and ranges_before.min() < 0.6  # saturating and narrow channels
    result = equalize_activations(model, "image", calib)
    assert result.pairs == 1 and result.spread_after < result.spread_before / 3
    ranges_after = channel_ranges(model, ["k0"], "image", calib)["k0"]
    assert ranges_after.max() <= 6.0 + 1e-5
    saturated = ranges_before >= 6.0
    np.testing.assert_allclose(ranges_after[saturated], ranges_before[saturated], rtol=1e-5)
    assert (ranges_after[~saturated] > ranges_before[~saturated] * 1.5).all()
    after = _run(model, calib)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5 * float(np.abs(before).max()))


@pytest.mark.parametrize(
    ("inputs", "attributes", "bound"),
    [
        (["x", "zero", "six"], {}, 6.0),
        (["x", "", "six"], {}, 6.0),  # no lower bound: min(x, 6), the same cap holds
        (["x", "minus", "six"], {}, None),  # a negative lower bound is not a ReLU
        (["x", "zero"], {}, None),  # no upper bound: a ReLU written as Clip (left alone)
        (["x"], {"min": 0.0, "max": 6.0}, 6.0),  # opset < 11: bounds as attributes
    ],
)
def test_clip_bound(inputs: list[str], attributes: dict[str, float], bound: float | None) -> None:
    from edge_sdk_export.equalize import clip_bound

    inits = {"zero": np.array(0.0, np.float32), "six": np.array(6.0, np.float32), "minus": np.array(-1.0, np.float32)}
    assert clip_bound(helper.make_node("Clip", inputs, ["y"], **attributes), inits) == bound


def _hardswish_net() -> onnx.ModelProto:
    """image -> conv (channels 100x apart) -> HardSwish -> depthwise -> 1x1 -> pooled output: MobileNetV3's
    expansion, with the HardSwish as torch.onnx writes it (one node, an ONNX function)."""
    rng = np.random.default_rng(5)
    spread = np.where(np.arange(WIDE) % 4 == 0, 8.0, 0.08).astype(np.float32)
    inits = {
        "w0": rng.normal(0, 0.4, (WIDE, 3, 3, 3)).astype(np.float32) * spread[:, None, None, None],
        "b0": rng.normal(0, 0.1, WIDE).astype(np.float32) * spread,
        # the depthwise evens the channels out again (as a BatchNorm folded into it would): the narrow ones matter
        "w1": rng.normal(0, 0.5, (WIDE, 1, 3, 3)).astype(np.float32) / spread[:, None, None, None],
        "b1": rng.normal(0, 0.1, WIDE).astype(np.float32),
        "w2": rng.normal(0, 0.3, (4, WIDE, 1, 1)).astype(np.float32),
    }
    pad = [1, 1, 1, 1]
    nodes = [
        helper.make_node("Conv", ["image", "w0", "b0"], ["c0"], name="conv0", pads=pad),
        helper.make_node("HardSwish", ["c0"], ["h0"], name="hardswish0"),
        helper.make_node("Conv", ["h0", "w1", "b1"], ["c1"], name="dw1", pads=pad, group=WIDE),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="project2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["out"], name="flat"),
    ]
    return _model(nodes, inits, "hardswish")


@pytest.mark.parametrize("prepared", [True, False], ids=["written-out", "one-op"])
def test_hardswish_pair_is_rescaled_exactly_and_its_gate_stays_float(tmp_path: Path, prepared: bool) -> None:
    """The conv0 -> dw1 pair is rescaled, whether HardSwish is one op (what onnx2tf converts for TFLite) or written
    out by onnxruntime's pre-processing (HardSigmoid + Mul: what the QDQ quantizer reads); the gate reads its
    unscaled input through a Mul that the QDQ quantizer leaves in float, and INT8 gets closer to FP32."""
    from edge_sdk_export.equalize import EQUALIZE_UNSCALE_PREFIX
    from edge_sdk_export.quant_onnx import prepare_for_quantization

    original, source = tmp_path / "original.onnx", tmp_path / "source.onnx"
    onnx.save(_hardswish_net(), str(original))
    if prepared:
        prepare_for_quantization(original, source)
    else:
        source = original
    pairs = find_pairs(onnx.load(str(source)))
    gate = "HardSigmoid" if prepared else "HardSwish"
    assert {(p.first.name, p.second.name, p.depthwise, getattr(p.gate, "op_type", None)) for p in pairs} == {
        ("conv0", "dw1", True, gate),
        ("dw1", "project2", False, None),
    }
    calib, x = _batch(96, 2), _batch(64, 3)
    equalized = tmp_path / "equalized.onnx"
    result = equalize_file(source, equalized, "image", calib)
    assert result.pairs == 2 and result.spread_after < result.spread_before / 3
    assert not any(n.op_type == "HardSwish" for n in onnx.load(str(equalized)).graph.node)
    reference = _run(original, x)
    np.testing.assert_allclose(_run(equalized, x), reference, rtol=1e-4, atol=1e-5 * float(np.abs(reference).max()))
    unscale = [n for n in onnx.load(str(equalized)).graph.node if n.name.startswith(EQUALIZE_UNSCALE_PREFIX)]
    assert [n.op_type for n in unscale] == ["Mul"]

    def error(fp32: Path) -> tuple[float, onnx.ModelProto]:
        path = _qdq(fp32, tmp_path / f"{fp32.stem}_int8.onnx", calib)
        int8 = _run(path, x)
        return float(np.sqrt(np.mean((int8 - reference) ** 2)) / reference.std()), onnx.load(str(path))

    (plain, _), (better, model) = error(original), error(equalized)
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    (kept,) = [n for n in model.graph.node if n.name.startswith(EQUALIZE_UNSCALE_PREFIX)]
    assert all(producers.get(name) != "DequantizeLinear" for name in kept.input[1:])  # its constant stays float
    # measured (cpu scheme, AVX2 EPYC): 0.194 -> 0.078; without the HardSwish pair (dw1 -> project2 only) 0.196
    assert better < 0.6 * plain, (plain, better)
