"""Issue #16 item 2 (+ item 3's probability-level metric): the export report names the machine's int8 kernels,
an artifact's card says where its gates were measured, and doctor / run / benchmark flag an artifact whose gates
were measured on another int8 kernel class than the running CPU.

"Another machine" is simulated by monkeypatching :func:`edge_sdk.cpu.int8_kernel_class` (what every CPU
description in edge-sdk derives its class from). One small real export (cpu target, rendered faces) checks
report.json and the card written after validation; everything else uses hand-made rows, cards and outputs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import edge_sdk.cpu
from edge_sdk.bench.export_row import REPORT_SCHEMA, ExportRow, GateResult, ReportRowError, rows_from_report
from edge_sdk.bench.machine import collect_machine_info
from edge_sdk.contract.card import ModelCard, ValidatedOn
from edge_sdk.contract.card_io import load_card, read_onnx_metadata_card, sha256_file
from edge_sdk.contract.onnx_metadata import weights_sha256
from edge_sdk.cpu import INT8_KERNEL_CLASSES, artifact_kernels_notice, describe_cpu, kernels_notice
from edge_sdk.errors import ContractError, InputError
from edge_sdk_export.artifacts import write_sidecar
from edge_sdk_export.fidelity import (
    DEFAULT_GATES,
    METRICS,
    OPTIONAL_GATES,
    compare,
    expression_agreement,
    expression_kl,
    expression_mean_abs_dp,
    parse_gates,
)
from edge_sdk_export.onnx_card import embed_card
from edge_sdk_export.report import markdown_table, record_validation, write_validated_on
from tests.model_factory import build_multitask_onnx, multitask_card

HERE = describe_cpu().int8_kernels
ELSEWHERE = "arm-dotprod" if HERE != "arm-dotprod" else "x86-vnni"  # a class this machine is not


def pretend_cpu(monkeypatch: pytest.MonkeyPatch, kernels: str) -> None:
    """Make every CPU description in this process report the int8 kernel class ``kernels``."""
    monkeypatch.setattr(edge_sdk.cpu, "int8_kernel_class", lambda arch, flags: kernels)


def card() -> ModelCard:
    return ModelCard.from_dict(multitask_card())


def int8_artifact(folder: Path, kernels: str | None) -> Path:
    """A small ONNX model whose embedded card says INT8, validated on ``kernels`` (None: not recorded)."""
    path = build_multitask_onnx(folder / "model_cpu_int8.onnx")
    base = read_onnx_metadata_card(path)
    validated = None if kernels is None else ValidatedOn(kernels, cpu="Some CPU", runtime="onnxruntime (CPU)")
    embed_card(path, base.with_changes(export=replace(base.export, precision="int8", validated_on=validated)))
    return path


# ---- ExportRow / GateResult --------------------------------------------------------------------
def a_row(**changes) -> ExportRow:
    row = ExportRow(
        target="cpu",
        format="onnx",
        status="passed",
        files=("m_cpu_int8.onnx",),
        backend="onnxruntime 1.20 (CPU)",
        metrics={"expression_agreement": 0.99, "expression_mean_abs_dp": 0.002, "au_occurrence_f1": None},
        gates=(GateResult("expression_agreement", "pass", "expression_agreement 0.9900 >= 0.98", "x86-vnni"),),
        heldout="64 rendered faces",
        measured_on="x86-vnni",
    )
    return replace(row, **changes)


def test_export_row_round_trip_with_kernels():
    row = a_row()
    data = json.loads(json.dumps(row.to_dict()))
    assert data["measured_on"] == "x86-vnni" and data["gates"][0]["measured_on"] == "x86-vnni"
    assert ExportRow.from_dict(data) == row
    assert rows_from_report({"schema": REPORT_SCHEMA, "rows": [data]}) == [row]
    assert row.fidelity()["measured_on"] == "x86-vnni"


def test_old_rows_without_kernels_still_read():
    data = a_row().to_dict()
    del data["measured_on"]
    for gate in data["gates"]:
        del gate["measured_on"]
    row = ExportRow.from_dict(data)
    assert row.measured_on is None and row.gates[0].measured_on is None
    assert "measured_on" not in row.fidelity()


def test_bad_kernel_field_is_named():
    data = a_row().to_dict()
    data["measured_on"] = 7
    with pytest.raises(ReportRowError, match=r"'rows\[0\]\.measured_on': expected a string"):
        rows_from_report({"schema": REPORT_SCHEMA, "rows": [data]})
    data = a_row().to_dict()
    data["gates"][0]["measured_on"] = ["x86"]
    with pytest.raises(ReportRowError, match=r"'rows\[0\]\.gates\[0\]\.measured_on': expected a string"):
        rows_from_report({"schema": REPORT_SCHEMA, "rows": [data]})


def test_with_measured_on_fills_only_what_was_measured():
    row = a_row(measured_on=None, gates=(GateResult("va_ccc", "n/a", "va_ccc: no head"),))
    stamped = row.with_measured_on("x86-no-vnni")
    assert stamped.measured_on == "x86-no-vnni" and stamped.gates[0].measured_on == "x86-no-vnni"
    assert a_row().with_measured_on("arm-neon").measured_on == "x86-vnni"  # recorded in the child: kept
    crashed = ExportRow(target="rpi", format="tflite", status="failed", reason="converter crashed")
    assert crashed.with_measured_on("x86-vnni") == crashed


def test_markdown_table_shows_kernels_and_probability_metrics():
    table = markdown_table([a_row()])
    header = table.splitlines()[0]
    assert "expr. mean abs dp" in header and "expr. KL" in header and "int8 kernels" in header
    assert "x86-vnni" in table.splitlines()[2] and "0.0020" in table


# ---- probability-level metrics ----------------------------------------------------------------------
def test_near_tie_low_agreement_but_tiny_probability_change():
    """A weak model: the top two classes nearly tied on every face; INT8 moves 0.004 of probability and
    flips most top-1s. Agreement says 'broken', the probability-level metrics say 'barely changed'."""
    c = card()
    rng = np.random.default_rng(0)
    n = 200
    base = np.full((n, 8), 0.4 / 6)
    signs = rng.choice([-1.0, 1.0], n)
    base[:, 0], base[:, 1] = 0.3 + 0.001 * signs, 0.3 - 0.001 * signs
    moved = base.copy()
    moved[:, 0], moved[:, 1] = base[:, 0] - 0.003 * signs, base[:, 1] + 0.003 * signs
    ref, out = {"expression": base}, {"expression": moved}
    assert expression_agreement(c, ref, out) == 0.0
    dp = expression_mean_abs_dp(c, ref, out)
    assert dp == pytest.approx(2 * 0.003 / 8)
    assert 0 < expression_kl(c, ref, out) < 1e-3
    assert expression_mean_abs_dp(c, ref, ref) == 0.0 and expression_kl(c, ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_probability_metrics_on_logits_and_missing_head():
    c = card()
    logits = np.array([[2.0, 0.0, -1.0, 0, 0, 0, 0, 0], [0.0, 3.0, 0, 0, 0, 0, 0, 0]])
    # not a distribution (activation 'none' on logits): both sides get a softmax first
    assert expression_mean_abs_dp(c, {"expression": logits}, {"expression": logits + 0.5}) == pytest.approx(0.0)
    assert expression_kl(c, {"expression": logits}, {"expression": logits[::-1]}) > 0.5
    no_expression = card().with_changes(heads=tuple(h for h in card().heads if h.kind != "expression"))
    assert expression_mean_abs_dp(no_expression, {}, {}) is None and expression_kl(no_expression, {}, {}) is None


def test_an_int8_softmax_output_is_compared_as_the_distribution_it_is():
    """A model ending in its own softmax (card activation 'none'): its int8 output is the FP32 probabilities
    rounded to 1/256 steps, summing to 1.0039 or 0.996. Measured on the FER2013 Xception's rpi file before the
    fix: that sum made the artifact side look like logits, a second softmax flattened it, and mean |dp| read
    0.194 (KL 1.13) for a file agreeing 1.000; it is 0.0007."""
    c = card()
    rng = np.random.default_rng(1)
    fp32 = rng.dirichlet(np.full(8, 0.3), 50)
    int8 = np.round(fp32 * 256) / 256
    assert not np.allclose(int8.sum(axis=1), 1.0, atol=1e-3)  # what used to mislead the check
    ref, out = {"expression": fp32}, {"expression": int8}
    assert expression_mean_abs_dp(c, ref, out) < 2e-3 and expression_kl(c, ref, out) < 0.05


def test_compare_reports_probability_metrics_for_every_artifact():
    c = card()
    rng = np.random.default_rng(1)
    raw = {h.name: rng.normal(size=(16, len(h.labels))).astype(np.float32) for h in c.heads}
    noisy = {k: v + rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in raw.items()}
    metrics = compare(c, raw, noisy)
    assert {"expression_mean_abs_dp", "expression_kl"} <= set(metrics) and set(METRICS) == set(metrics)
    assert 0 < metrics["expression_mean_abs_dp"] < 0.05 and 0 < metrics["expression_kl"] < 0.05


def test_probability_gate_is_optional_and_configurable():
    assert "expression_mean_abs_dp" not in DEFAULT_GATES and "expression_mean_abs_dp" in OPTIONAL_GATES
    assert set(parse_gates(None)) == set(DEFAULT_GATES)
    gates = parse_gates(["expression_mean_abs_dp=0.02", "expression_agreement=off"])
    assert "expression_agreement" not in gates and not gates["expression_mean_abs_dp"].higher_is_better
    assert gates["expression_mean_abs_dp"].check(0.01)[0] == "pass"
    assert gates["expression_mean_abs_dp"].check(0.03)[0] == "fail"
    with pytest.raises(InputError, match="expression_mean_abs_dp"):
        parse_gates(["nonsense=1"])
    with pytest.raises(InputError, match="not a number"):
        parse_gates(["expression_mean_abs_dp=x"])


# ---- the card records where its gates were measured --------------------------------------------------
def test_validated_on_is_optional_in_the_card():
    old = card()
    assert old.export.validated_on is None and "validated_on" not in old.to_dict()["export"]
    assert ModelCard.from_json(old.to_json()).to_json() == old.to_json()  # 1.0 card: same bytes back
    validation = ValidatedOn("x86-no-vnni", "Intel Core i5-4590", ("avx2", "fma"), "onnxruntime 1.20 (CPU)", True)
    new = old.with_changes(export=replace(old.export, validated_on=validation))
    back = ModelCard.from_json(new.to_json())
    assert back.export.validated_on == validation and back.export == old.export  # the file, not the contract
    bad = json.loads(new.to_json())
    bad["export"]["validated_on"]["kernels"] = ""
    with pytest.raises(ContractError, match="export.validated_on.kernels"):
        ModelCard.from_dict(bad)
    bad["export"]["validated_on"] = {"kernels": "x86-vnni", "metrics": {"expression_kl": "low"}}
    with pytest.raises(ContractError, match="export.validated_on.metrics.expression_kl"):
        ModelCard.from_dict(bad)


def test_rewriting_an_embedded_card_keeps_the_weights_hash(tmp_path):
    path = build_multitask_onnx(tmp_path / "m.onnx")
    before = weights_sha256(path)
    write_validated_on(path, ValidatedOn("x86-no-vnni", "cpu"))
    loaded = load_card(path)  # checks export.weights_sha256 against the file
    assert loaded.export.validated_on.kernels == "x86-no-vnni" and weights_sha256(path) == before


def test_rewriting_a_sidecar_keeps_the_file_hashes(tmp_path):
    main, extra = tmp_path / "m.xml", tmp_path / "m.bin"
    main.write_bytes(b"<net/>")
    extra.write_bytes(b"\0" * 64)
    write_sidecar(card().with_changes(export=replace(card().export, precision="int8")), [main, extra])
    row = a_row(files=("m.xml", "m.bin", "m.card.json"), status="failed", measured_on="x86-no-vnni")
    (written,) = record_validation(tmp_path, [row], collect_machine_info(), fp32_size=1000)
    assert written.size_bytes == 6 + 64 and written.size_ratio == 0.07 and written.notes == row.notes
    loaded = load_card(main)  # verifies both files' sha256
    assert loaded.files == {"m.xml": sha256_file(main), "m.bin": sha256_file(extra)}
    validated = loaded.export.validated_on
    assert (validated.kernels, validated.passed) == ("x86-no-vnni", False)
    assert validated.metrics["expression_mean_abs_dp"] == 0.002 and validated.runtime == row.backend


# ---- doctor / run / benchmark flag gates measured elsewhere ------------------------------------------
def test_kernels_notice():
    cpu = describe_cpu()
    assert kernels_notice(cpu.int8_kernels, cpu) is None and kernels_notice(None, cpu) is None
    notice = kernels_notice(ELSEWHERE, cpu, "m.onnx")
    assert f"measured on int8 kernels {ELSEWHERE}" in notice and cpu.int8_kernels in notice and "m.onnx" in notice
    fp32 = card().with_changes(export=replace(card().export, validated_on=ValidatedOn(ELSEWHERE)))
    assert artifact_kernels_notice(fp32.export) is None  # FP32 accuracy does not depend on int8 kernels


def test_doctor_flags_gates_measured_on_another_kernel_class(tmp_path, monkeypatch):
    from edge_sdk.cli.doctor import Setup, check_model

    path = int8_artifact(tmp_path, HERE)
    same = {f.check: f for f in check_model(Setup(model=str(path)))}
    assert same["model int8 kernels"].status == "ok" and HERE in same["model int8 kernels"].detail
    pretend_cpu(monkeypatch, ELSEWHERE)  # the same file, on a machine of another class
    other = {f.check: f for f in check_model(Setup(model=str(path)))}
    finding = other["model int8 kernels"]
    assert finding.status == "warn" and not finding.required
    assert f"measured on int8 kernels {HERE}" in finding.detail and f"runs {ELSEWHERE}" in finding.detail
    assert "edge-sdk export" in finding.fix
    assert other[f"model {path}"].status in ("ok", "warn")  # the model itself still loads and runs


def test_doctor_says_when_an_int8_card_does_not_record_kernels(tmp_path):
    from edge_sdk.cli.doctor import Setup, check_model

    findings = {f.check: f for f in check_model(Setup(model=str(int8_artifact(tmp_path, None))))}
    assert findings["model int8 kernels"].status == "info" and "does not say" in findings["model int8 kernels"].detail


def test_run_warns_at_start_when_gates_were_measured_elsewhere(tmp_path, monkeypatch, caplog):
    from edge_sdk.assembly import load_model

    path = int8_artifact(tmp_path, HERE)
    load_model(str(path))
    assert "fidelity gates were measured" not in caplog.text
    pretend_cpu(monkeypatch, ELSEWHERE)
    load_model(str(path))
    (warned,) = [r for r in caplog.records if "fidelity gates were measured" in r.getMessage()]
    assert (
        warned.levelname == "WARNING" and f"fidelity gates were measured on int8 kernels {HERE}" in warned.getMessage()
    )


def test_benchmark_notes_gates_measured_elsewhere(tmp_path, monkeypatch):
    from edge_sdk.bench.artifacts import load_artifact
    from edge_sdk.bench.run import kernel_notes
    from edge_sdk.targets import get_target

    artifact = load_artifact(int8_artifact(tmp_path, HERE), get_target("cpu"))
    assert kernel_notes([artifact], collect_machine_info()) == []
    pretend_cpu(monkeypatch, ELSEWHERE)
    notes = kernel_notes([artifact], collect_machine_info())
    assert len(notes) == 1 and f"measured on int8 kernels {HERE}" in notes[0]


# ---- one small real export: report.json names the machine, the card records the validation ----------
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from edge_sdk_export.pipeline import ExportOptions, run_export

    folder = tmp_path_factory.mktemp("kernels")
    model = build_multitask_onnx(folder / "model.onnx")
    out = folder / "out"
    loose = ["va_ccc=0", "au_occurrence_f1=0", "expression_agreement=0", "pspi_mae=16", "expression_mean_abs_dp=0.5"]
    report = run_export(
        ExportOptions(
            model=str(model),
            targets=["cpu"],
            calib="synthetic",
            out=out,
            calib_size=32,
            heldout_size=32,
            gates=parse_gates(loose),
            latency_runs=3,
            progress=False,
        )
    )
    return out, report


def test_report_names_the_machine_and_kernels(exported):
    out, report = exported
    on_disk = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert on_disk["schema"] == REPORT_SCHEMA
    info = on_disk["machine_info"]
    cpu = describe_cpu()
    assert (info["cpu"], info["int8_kernels"], info["isa_flags"]) == (cpu.model, cpu.int8_kernels, list(cpu.isa_flags))
    assert info["int8_kernels_meaning"] == INT8_KERNEL_CLASSES[cpu.int8_kernels]
    assert "onnxruntime" in info["runtimes"] and "python" in info["runtimes"]
    assert on_disk["gates"]["expression_mean_abs_dp"]["measured_on"] == cpu.int8_kernels
    (row,) = rows_from_report(on_disk)
    assert row.measured_on == cpu.int8_kernels and row.gates
    assert all(g.measured_on == cpu.int8_kernels for g in row.gates)
    assert row.metric("expression_mean_abs_dp") is not None and row.metric("expression_kl") is not None
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"int8 kernels: **{cpu.int8_kernels}**" in md and cpu.model in md and "expr. mean abs dp" in md
    assert f"(int8 kernels {cpu.int8_kernels})" in md


def test_exported_card_records_where_it_was_validated(exported):
    out, report = exported
    row = report["rows"][0]
    card_ = load_card(out / row["files"][0])  # weights hash checked: the rewritten card is valid
    validated = card_.export.validated_on
    assert validated is not None and validated.kernels == describe_cpu().int8_kernels
    assert validated.passed is (row["status"] == "passed") and validated.runtime == row["backend"]
    assert validated.metrics == row["metrics"]


def test_a_card_that_cannot_be_rewritten_is_noted_not_fatal(tmp_path):
    row = a_row(files=("gone.onnx",))
    (noted,) = record_validation(tmp_path, [row], collect_machine_info())
    assert noted.notes and "card not updated with export.validated_on" in noted.notes[-1]
    assert noted.size_bytes == row.size_bytes
