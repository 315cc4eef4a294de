"""`--max-drop` (NNCF accuracy control for the openvino target): the score callback always sees the FP32 rows
of the faces NNCF actually ran.

NNCF calls the validation function on the whole held-out set and on single items (to find its mode); before
2026-12-03 the callback compared whatever it got with the *whole* FP32 reference, so a one-face call broadcast
one face against all of them. Real NNCF, real OpenVINO, a small random-weight multitask net.
"""

from __future__ import annotations

import numpy as np

from edge_sdk.backend.onnxruntime_backend import open_session
from edge_sdk.contract.card_io import load_card
from edge_sdk_export.quant_openvino import quantize_openvino
from tests.model_factory import build_multitask_onnx


def test_accuracy_control_scores_each_call_against_its_own_rows(tmp_path):
    onnx_path = build_multitask_onnx(tmp_path / "m.onnx")
    card = load_card(onnx_path)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((24, 3, 64, 64)).astype(np.float32)
    heldout = rng.standard_normal((12, 3, 64, 64)).astype(np.float32)
    session = open_session(onnx_path, threads=1)
    names = list(card.output_tensors)
    reference = dict(zip(names, session.run(names, {card.input.name: heldout}), strict=True))
    calls: list[tuple[int, list[int]]] = []

    def score(outputs: dict[str, np.ndarray], rows: np.ndarray) -> float:
        calls.append((len(outputs[names[0]]), [int(r) for r in rows]))
        error = np.mean([np.abs(outputs[n] - reference[n][rows]).mean() for n in names])
        return float(1.0 - error)  # below 1 for any INT8 file: NNCF has to revert layers

    xml = quantize_openvino(onnx_path, tmp_path / "m.xml", card, calib, (heldout, score), max_drop=1e-4)
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert calls, "NNCF never called the score"
    assert all(count == len(rows) for count, rows in calls)  # outputs and FP32 rows always line up
    assert (len(heldout), list(range(len(heldout)))) in calls  # the whole set, in order
    assert any(count == 1 for count, _ in calls)  # and single faces, each against its own row
