"""Machine output is clean: ``--json`` puts only JSON on stdout (one object, or JSON lines for ``run``),
everything for a person goes to stderr, ``-q``/``--quiet`` mean it, and the exit codes are documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_sdk.cli import EXIT_CODES, main
from edge_sdk.model.face_model import SYNTHETIC_NOTICE
from tests.conftest import REPO
from tests.runtime_fixtures import face_file, yunet_path


def edge_sdk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_run_json_is_json_lines_on_stdout_and_people_text_on_stderr() -> None:
    clip = face_file("single_face.mp4")
    result = edge_sdk(
        "run",
        "--json",
        "--print-frames",
        "--model",
        "demo",
        "--source",
        str(clip),
        "--detector-model",
        str(yunet_path()),
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]  # every line parses on its own
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "event" and records[0]["event"] == "run_started"
    assert kinds[-1] == "summary" and records[-1]["frames"] == 72 and records[-1]["stopped_by"] == "end of source"
    frames = [r for r in records if r["kind"] == "frame"]
    assert [f["frame"] for f in frames] == list(range(72)) and set(kinds) == {"event", "frame", "summary"}
    assert all(f["media_time"] is not None and f["faces"] for f in frames)
    # one clock: every event lies inside the run's frames (file events used to be stamped on media time)
    events = [r for r in records if r["kind"] == "event"]
    assert all(events[0]["timestamp"] <= e["timestamp"] <= frames[-1]["timestamp"] + 5 for e in events)
    # stderr: the synthetic-weights warning once and the notices; no record, no JSON
    assert result.stderr.count(SYNTHETIC_NOTICE) == 1 and "warning: " in result.stderr
    assert "face detector: yunet" in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith(("{", "[event]"))]


def test_quiet_run_shows_only_warnings_and_the_human_summary_on_stdout() -> None:
    clip = face_file("single_face.mp4")
    args = ("run", "--model", "demo", "--source", str(clip), "--detector-model", str(yunet_path()), "--max-frames", "5")
    loud, quiet = edge_sdk(*args), edge_sdk("-q", *args)
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "[event] run_started" in loud.stderr and "face detector:" in loud.stderr  # events: stderr, not stdout
    assert "[event]" not in loud.stdout and "processed 5 frames" in loud.stdout
    assert quiet.stderr.splitlines() == [f"warning: {SYNTHETIC_NOTICE}"]
    assert quiet.stdout.startswith("processed 5 frames") and quiet.stdout.count("\n") == loud.stdout.count("\n")


def test_card_json_is_one_object_and_plain_card_stdout_is_a_card_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["card", "demo", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # the whole of stdout: no trailing 'valid:' text
    assert set(data) == {"card", "valid"} and data["valid"]["synthetic_demo"] is True
    assert data["valid"]["forward_pass"].startswith("ok on onnxruntime") and err == ""
    assert main(["card", "demo"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == data["card"] and "valid: contract 1.0" in err
    saved = tmp_path / "demo.card.json"  # `edge-sdk card demo > demo.card.json` is a valid card file
    saved.write_text(out)
    assert main(["card", str(saved)]) == 0


def test_benchmark_quiet_prints_no_event_and_nothing_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["benchmark", "--target", "cpu", "--quiet", "--runs", "5", "--warmup", "1", "--threads", "1"]
    args += ["--precision", "fp32", "--pipeline", str(face_file("single_face.mp4")), "--pipeline-frames", "15"]
    args += ["--detector-model", str(yunet_path()), "--json", str(tmp_path / "b.json")]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert err == "" and "[event]" not in out and "pipeline" in out
    assert json.loads((tmp_path / "b.json").read_text())["pipeline"]["frames"] == 15


def test_exit_codes_are_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert set(EXIT_CODES) == {0, 1, 2, 130, 141}
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in text
    assert "-q" in text and "-v" in text


def test_run_json_into_head_stops_the_run_quietly_and_the_log_says_why(tmp_path: Path) -> None:
    """`edge-sdk run --json ... | head -1` on a 472-frame clip: one line, exit 141 with no traceback, and the run
    stops at once (a Unix tool stops on SIGPIPE), its log flushed with the reason."""
    command = [sys.executable, "-m", "edge_sdk", "run", "--json", "--print-frames", "--model", "demo"]
    command += ["--source", str(face_file("WolfgangLanger_Pexels.mp4")), "--detector-model", str(yunet_path())]
    command += ["--log-dir", str(tmp_path / "log"), "--log-format", "jsonl"]
    script = f'{" ".join(command)} 2>"$1" | head -1; echo "exit=${{PIPESTATUS[0]}}"'
    stderr = tmp_path / "stderr.txt"
    done = subprocess.run(["bash", "-c", script, "bash", str(stderr)], capture_output=True, text=True, cwd=REPO)
    first, status = done.stdout.splitlines()
    assert json.loads(first)["event"] == "run_started" and status == "exit=141", done.stdout
    assert "Traceback" not in stderr.read_text() and "Exception ignored" not in stderr.read_text()
    (log,) = (tmp_path / "log").glob("*.jsonl")
    stopped = json.loads(log.read_text().splitlines()[-1])
    assert stopped["event"] == "run_stopped" and stopped["stopped_by"] == "stdout closed"
    assert stopped["frames"] < 100
