"""Structured pruning + distillation of a torch model that is not the reference network (issue #14, item 3).

The model is tests/byo_torch_model.py (MobileNetV3-small style: depthwise convs, squeeze-excitation, hardswish,
two heads, dict output). Pruning finds the layers producing each card output from the module's own graph, keeps
them whole, and distils per card head; the pruned module still exports to ONNX with the card's names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from edge_sdk.contract.card import ModelCard  # noqa: E402
from edge_sdk.contract.processing import preprocess  # noqa: E402
from edge_sdk.errors import ArtifactError  # noqa: E402
from edge_sdk_export.calibration import synthetic_crops  # noqa: E402
from edge_sdk_export.pruning import output_layers, prune_and_recover  # noqa: E402
from tests.byo_torch_model import TinyAffectNet, build  # noqa: E402

RATIO = 0.3
STEPS = 40


def _crops(card: ModelCard, count: int, seed: int) -> np.ndarray:
    """Preprocessed NCHW float16 rendered faces, as the pipeline hands pruning its data."""
    crops = synthetic_crops(card.input.height, card.input.width, count, seed).crops
    return preprocess(list(crops), card.input).astype(np.float16)


def _activated(card: ModelCard, outputs: tuple) -> dict[str, np.ndarray]:
    """Each card head's activated output (softmax / tanh), by name."""
    index = {name: i for i, name in enumerate(card.output_tensors)}
    result = {}
    for head in card.heads:
        raw = outputs[index[head.tensor]]
        result[head.name] = (raw.softmax(-1) if head.activation == "softmax" else raw.tanh()).numpy()
    return result


def _errors(card: ModelCard, teacher, student, x: np.ndarray) -> dict[str, float]:
    """Mean absolute difference per head between teacher and student (activated outputs)."""
    batch = torch.from_numpy(x.astype(np.float32))
    with torch.no_grad():
        want, got = _activated(card, teacher(batch)), _activated(card, student(batch))
    return {name: float(np.abs(want[name] - got[name]).mean()) for name in want}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: small batches on a busy 2-core box ran ~8x slower with two OpenMP threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def byo():
    from edge_sdk_export.sources import normalise_module

    module, card_dict = build()
    card = ModelCard.from_dict(card_dict)
    return normalise_module(module, card, "byo model"), card


@pytest.fixture(scope="module")
def pruned(byo):
    model, card = byo
    data = _crops(card, 128, 11)
    raw = prune_and_recover(model, RATIO, data, card, steps=0, seed=0, progress=False)
    recovered = prune_and_recover(model, RATIO, data, card, steps=STEPS, batch=32, seed=0, progress=False)
    return raw, recovered


def _head_names(model) -> dict[str, list[str]]:
    """Qualified names of the byo network's two head layers inside the (normalised) ``model``."""
    net = next(m for m in model.modules() if isinstance(m, TinyAffectNet))
    names = {id(m): name for name, m in model.named_modules()}
    return {"expression": [names[id(net.expression)]], "valence_arousal": [names[id(net.affect)]]}


def test_head_layers_are_found_from_the_graph(byo):
    model, card = byo
    net = next(m for m in model.modules() if isinstance(m, TinyAffectNet))
    found = output_layers(model, torch.zeros(card.input.shape))
    assert found == [[net.expression], [net.affect]]


def test_prune_cuts_parameters_and_keeps_every_head(byo, pruned):
    model, card = byo
    _, result = pruned
    assert result.params_after <= 0.6 * result.params_before, result.summary()
    assert result.macs_after < result.macs_before
    assert result.kept_whole == _head_names(model)
    x = torch.zeros(2, *card.input.shape[1:])
    with torch.no_grad():
        shapes = [tuple(t.shape) for t in result.model(x)]
        assert shapes == [tuple(t.shape) for t in model(x)] == [(2, 8), (2, 2)]
    # the model passed in is untouched
    assert sum(p.numel() for p in model.parameters()) == result.params_before


def test_distillation_brings_the_pruned_model_back_towards_the_teacher(byo, pruned):
    model, card = byo
    raw, recovered = pruned
    heldout = _crops(card, 64, 12)
    before = _errors(card, model, raw.model, heldout)
    after = _errors(card, model, recovered.model, heldout)
    assert all(after[h] < before[h] for h in before), (before, after)
    assert recovered.distill["loss_last"] < recovered.distill["loss_first"]


def test_pruned_module_exports_to_onnx_and_loads(byo, pruned, tmp_path: Path):
    import onnxruntime as ort

    from edge_sdk_export.sources import torch_to_onnx

    _, card = byo
    _, result = pruned
    path = tmp_path / "pruned.onnx"
    diffs = torch_to_onnx(result.model, card, path)
    assert set(diffs) == {"expression", "valence_arousal"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["expression", "valence_arousal"]
    x = _crops(card, 3, 13).astype(np.float32)
    outputs = session.run(None, {card.input.name: x})
    assert [o.shape for o in outputs] == [(3, 8), (3, 2)]


class _Renamed(torch.nn.Module):
    """The byo model with one output key renamed (and optionally one added)."""

    def __init__(self, inner: torch.nn.Module, extra: bool) -> None:
        super().__init__()
        self.inner = inner
        self.extra = extra

    def forward(self, x):
        out = self.inner(x)
        if self.extra:
            return {**out, "features": out["expression"]}
        return {"expression": out["expression"], "va": out["valence_arousal"]}


@pytest.mark.parametrize(("extra", "message"), [(False, "missing 'valence_arousal'"), (True, "unexpected 'features'")])
def test_dict_outputs_that_do_not_match_the_card_are_refused(extra: bool, message: str):
    module, card_dict = build(fit=False)
    card = ModelCard.from_dict(card_dict)
    data = np.zeros((2, 3, 64, 64), np.float16)
    with pytest.raises(ArtifactError, match=message) as caught:
        prune_and_recover(_Renamed(module, extra), RATIO, data, card, steps=1, progress=False)
    assert "expression, valence_arousal" in str(caught.value)


class _PackedGray(torch.nn.Module):
    """A 1-channel NHWC model whose two heads share one output tensor (columns), built by concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, 2, 1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, 2, 1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        )  # fmt: skip
        self.logits = torch.nn.Linear(32, 8)
        self.va = torch.nn.Linear(32, 2)

    def forward(self, x):
        z = self.body(x.permute(0, 3, 1, 2))
        return torch.cat([self.logits(z), torch.tanh(self.va(z))], dim=1)


def _packed_card() -> ModelCard:
    _, card = build(fit=False)
    card["input"].update(layout="NHWC", channels=1, color_order="GRAY", mean=[0.5], std=[0.5], size=[32, 32])
    card["heads"][0].update(output="affect", columns=[0, 8])
    card["heads"][1].update(output="affect", columns=[8, 10], activation="none")
    return ModelCard.from_dict(card)


def test_gray_nhwc_model_with_heads_packed_in_one_output():
    torch.manual_seed(0)
    card = _packed_card()
    model = _PackedGray().eval()
    data = np.random.default_rng(0).normal(0, 1, (16, 1, 32, 32)).astype(np.float16)  # NCHW, as the pipeline has
    result = prune_and_recover(model, 0.5, data, card, steps=3, batch=8, seed=0, progress=False)
    assert {k: sorted(v) for k, v in result.kept_whole.items()} == {"affect": ["module.logits", "module.va"]}
    assert result.params_after < result.params_before
    with torch.no_grad():
        (out,) = result.model(torch.zeros(2, 32, 32, 1))
    assert tuple(out.shape) == (2, 10)


def test_distillation_keeps_the_best_checked_weights_and_stops_when_checks_stop_improving(byo):
    """A validator that likes the untrained student best: step 0's weights come back, training stops after
    ``patience`` checks without a better score, and the report lists every check."""
    model, card = byo
    data = _crops(card, 64, 14)
    scores = iter([0.5, 0.1, 0.2, 0.3, 0.4, 0.9])  # never better than step 0 within patience 3
    seen: list[dict[str, torch.Tensor]] = []

    def validator(student) -> float:
        seen.append({k: v.clone() for k, v in student.state_dict().items()})
        return next(scores)

    from edge_sdk_export.pruning import distill

    raw = prune_and_recover(model, RATIO, data, card, steps=0, seed=0, progress=False).model
    student = prune_and_recover(model, RATIO, data, card, steps=0, seed=0, progress=False).model
    teacher = model
    report = distill(
        student, teacher, data, steps=40, batch=16, seed=0, progress=False, card=card,
        validator=validator, check_every=5, patience=3,
    )  # fmt: skip
    assert [c["step"] for c in report["checks"]] == [0, 5, 10, 15]
    assert report["kept_step"] == 0 and report["kept_score"] == 0.5 and report["steps_run"] == 15
    kept = student.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in raw.state_dict().items())
    assert not all(torch.equal(seen[-1][k], v) for k, v in raw.state_dict().items())  # it did train meanwhile


def test_distillation_keeps_later_weights_when_they_score_better(byo):
    model, card = byo
    data = _crops(card, 64, 15)
    scores = iter([0.1, 0.2, 0.3])
    student = prune_and_recover(model, RATIO, data, card, steps=0, seed=0, progress=False).model
    from edge_sdk_export.pruning import distill

    report = distill(
        student, model, data, steps=10, batch=16, seed=0, progress=False, card=card,
        validator=lambda _s: next(scores), check_every=5,
    )  # fmt: skip
    assert report["kept_step"] == 10 and report["steps_run"] == 10 and len(report["checks"]) == 3


def test_gate_margin_is_the_worst_gate_relative_to_its_room():
    from edge_sdk_export.fidelity import DEFAULT_GATES, gate_margin

    perfect = {"expression_agreement": 1.0, "au_occurrence_f1": 1.0, "va_ccc": 1.0, "pspi_mae": 0.0}
    assert gate_margin(perfect, DEFAULT_GATES) == pytest.approx(1.0)
    assert gate_margin({**perfect, "expression_agreement": 0.97}, DEFAULT_GATES) == pytest.approx(-0.5)
    assert gate_margin({**perfect, "pspi_mae": 0.3}, DEFAULT_GATES) == pytest.approx(-1.0)
    assert gate_margin({**perfect, "va_ccc": None}, DEFAULT_GATES) == pytest.approx(1.0)  # no such head


def test_validation_crops_are_whole_blocks_kept_out_of_distillation():
    from edge_sdk_export.pipeline import VALIDATION_BLOCK, VALIDATION_EVERY, VALIDATION_REAL, _validation_mask

    mask = _validation_mask(1000)
    assert mask.sum() == 1000 // VALIDATION_EVERY
    picked = np.flatnonzero(mask)
    assert picked[0] == (VALIDATION_EVERY - 1) * VALIDATION_BLOCK and np.all(np.diff(picked)[:9] == 1)
    assert _validation_mask(100_000).sum() == VALIDATION_REAL


def test_the_export_validator_scores_per_group_and_keeps_the_worst(tmp_path: Path):
    """The pipeline's checkpoint score: the unpruned model itself scores ~1 (perfect) on both groups; a student
    that is perfect on rendered faces but off on the real crops scores as the real crops say."""
    from edge_sdk_export.pipeline import ExportOptions, _validator, resolve_step

    options = ExportOptions(model="demo", targets=["cpu"], calib="synthetic", out=tmp_path / "out", threads=1)
    source = resolve_step(options, tmp_path)
    card = source.card
    groups = {"calibration": _crops(card, 24, 16), "rendered": _crops(card, 24, 17)}
    score = _validator(source, card, groups, options)
    teacher = source.torch_model.eval()
    with torch.no_grad():
        assert score(teacher) == pytest.approx(1.0, abs=1e-3)

        real = torch.from_numpy(groups["calibration"].astype(np.float32))

        class OffOnRealCrops(torch.nn.Module):
            """The teacher, except that on the real crops its outputs are reversed (every head far off)."""

            def forward(self, x):
                outputs = teacher(x)
                return tuple(o.flip(-1) for o in outputs) if torch.equal(x, real) else outputs

        assert score(OffOnRealCrops()) < 0
    assert _validator(source, card, {}, options) is None
