"""``edge-sdk analyze`` and ``analyze_video``: recordings and image folders -> the per-frame, per-face table.

Real CLI in subprocesses, the packaged demo model, YuNet and the videos/images from ../shared/data/faces.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_sdk.store.table import FaceIds, FaceTableSchema, au_name
from tests.conftest import REPO
from tests.runtime_fixtures import face_file, yunet_path

WOLFGANG_FRAMES = 472
REQUIRED = ["file", "frame", "timestamp", "face_id", "success", "det_score", "x", "y", "w", "h"]
REQUIRED += ["AU01_r", "AU04_r", "AU12_r", "AU43_r", "AU04_c", "AU04_p", "expr_happy", "valence", "arousal", "pspi"]


def analyze(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk", "analyze", "--detector-model", str(yunet_path()), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_wolfgang_csv_and_parquet_with_two_workers_are_the_same_table(tmp_path: Path) -> None:
    """Done-when: >= 472 rows with AU04_r, AU04_c, pspi... and no JSON column; .parquet (here from two worker
    processes) holds the same rows, typed."""
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (extra data) is not installed")
    video = face_file("WolfgangLanger_Pexels.mp4")
    out_csv, out_parquet = tmp_path / "x.csv", tmp_path / "x.parquet"
    one = analyze(str(video), "--model", "demo", "--out", str(out_csv))
    assert one.returncode == 0, one.stderr
    assert f"{WOLFGANG_FRAMES} frames" in one.stderr and one.stdout == ""
    columns, rows = read_csv(out_csv)
    assert len(rows) >= WOLFGANG_FRAMES and set(REQUIRED) <= set(columns)
    aus = [c[:-2] for c in columns if c.endswith("_r")]
    assert aus == sorted(aus, key=lambda a: int(a[2:])) and all(len(a) == 4 for a in aus)  # AU01 ... AU43
    assert not any(v.startswith(("{", "[")) for row in rows for v in row.values())  # numbers, never JSON text
    faces = [r for r in rows if r["success"] == "1"]
    assert len(faces) >= 0.95 * WOLFGANG_FRAMES and {r["face_id"] for r in faces} == {"0"}  # one woman, one id
    assert [int(r["frame"]) for r in rows] == sorted(int(r["frame"]) for r in rows)
    assert all(r["AU04_c"] == str(int(float(r["AU04_p"]) >= 0.5)) for r in faces)
    assert abs(float(rows[-1]["timestamp"]) - (WOLFGANG_FRAMES - 1) / 23.976) < 0.1  # media seconds

    two = analyze(str(video), "--out", str(out_parquet), "--workers", "2")
    assert two.returncode == 0, two.stderr
    table = pq.read_table(out_parquet)
    assert table.column_names == columns and table.num_rows == len(rows)
    types = {f.name: str(f.type) for f in table.schema}
    assert types["frame"] == types["face_id"] == types["AU04_c"] == "int64"
    assert types["AU04_r"] == types["pspi"] == types["timestamp"] == "double" and types["file"] == "string"
    as_text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in table.to_pylist()]
    assert as_text == rows  # the same values whatever the number of workers


def test_image_folder_and_a_video_without_faces(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("single_face.jpg", "multi_face.jpg"):
        shutil.copy(face_file(name), folder / name)
    out, frames = tmp_path / "x.csv", tmp_path / "frames"
    video = str(face_file("no_face.mp4"))
    result = analyze(str(folder), video, "--every", "10", "--out", str(out), "--pain", "--save-frames", str(frames))
    assert result.returncode == 0, result.stderr
    saved = sorted(str(p.relative_to(frames)) for p in frames.rglob("*.jpg"))  # pixels only when asked for
    expected = ["multi_face.annotated.jpg", "single_face.annotated.jpg"]
    assert saved == sorted([*expected, *(f"no_face.mp4/{i:06d}.jpg" for i in range(0, 98, 10))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "images", "x.csv"]
    columns, rows = read_csv(out)
    assert columns[-3:] == ["pspi_smoothed", "pain_score", "pain_state"]
    by_file: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_file.setdefault(Path(row["file"]).name, []).append(row)
    multi, single, empty = by_file["multi_face.jpg"], by_file["single_face.jpg"], by_file["no_face.mp4"]
    assert [r["face_id"] for r in multi] == ["0", "1", "2", "3", "4"]  # five faces, largest first
    assert [r["face_id"] for r in single] == ["0"] and single[0]["timestamp"] == ""  # an image has no media time
    areas = [float(r["w"]) * float(r["h"]) for r in multi]
    assert areas == sorted(areas, reverse=True)
    assert [int(r["frame"]) for r in empty] == list(range(0, 98, 10))  # every 10th frame, one row each
    assert all(r["success"] == "0" and r["face_id"] == r["AU04_r"] == r["pspi"] == "" for r in empty)
    assert {r["pain_state"] for r in empty} <= {"unknown", "no_face"}


def test_analyze_video_library(tmp_path: Path) -> None:
    from edge_sdk import analysis
    from edge_sdk.face.detect import YuNetDetector

    with pytest.warns(UserWarning, match="SYNTHETIC DEMO"):  # the library warns; it never prints
        result = analysis.analyze_video(face_file("single_face.mp4"), detector=YuNetDetector(yunet_path()), every=3)
    frames = list(result)
    assert [f.index for f in frames] == list(range(0, 72, 3))
    assert all(f.face_ids == (0,) for f in frames) and frames[1].timestamp > frames[0].timestamp
    assert list(result) == frames  # kept, not analysed twice
    rows = result.rows()
    assert len(rows) == len(frames) and list(rows[0]) == result.columns
    assert rows[0]["AU04_r"] == round(frames[0].faces[0].au_intensities["AU4"], 4)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(Exception, match=r"edge-sdk\[data\]"):
            result.to_dataframe()
    else:
        df = result.to_dataframe()
        assert df.shape == (len(rows), len(result.columns)) and str(df["face_id"].dtype) == "Int64"


def test_to_dataframe_without_pandas_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "from edge_sdk.analysis.video import VideoAnalysis\n"
        "from edge_sdk.store.table import FaceTableSchema\n"
        "VideoAnalysis(iter(()), FaceTableSchema()).to_dataframe()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 1 and "pip install 'edge-sdk[data]'" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.mp4", "--out", "x.csv"], "missing.mp4: no such file or folder"),
        (["{video}", "--out", "x.txt"], "expected a .csv or .parquet file name"),
        (["{video}", "--out", "x.csv", "--every", "0"], "--every 0"),
        (["{video}", "--out", "no/such/dir/x.csv"], "does not exist"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.replace("{video}", str(face_file("single_face.mp4"))) for a in args]
    args = [str(tmp_path / a) if a.startswith(("x.", "no/", "missing")) else a for a in args]
    result = analyze(*args)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_face_ids_follow_boxes_and_columns_are_numeric_order() -> None:
    ids = FaceIds()
    assert ids.assign([(0, 0, 10, 10), (100, 0, 10, 10)]) == [0, 1]
    assert ids.assign([(101, 1, 10, 10), (1, 0, 10, 10)]) == [1, 0]  # order in the frame does not matter
    assert ids.assign([]) == [] and ids.assign([(300, 0, 10, 10)]) == [2]
    assert [au_name(a) for a in ("AU1", "au12", "AU04", "AU43")] == ["AU01", "AU12", "AU04", "AU43"]
    schema = FaceTableSchema.from_heads(
        {"i": ["AU12", "AU1", "AU4"], "e": ["happy"]}, {"i": "au_intensity", "e": "expression"}
    )
    assert [n for n in schema.names if n.startswith(("AU", "expr"))] == ["AU01_r", "AU04_r", "AU12_r", "expr_happy"]


def test_a_frame_the_model_failed_on_is_a_row_that_says_so() -> None:
    from edge_sdk.analysis.work import FileLabeler, RawFrame

    rows = RawFrame("v.mp4", 3, 0.125, (), False, "infer failed: RuntimeError: boom").rows()
    FileLabeler().label(rows)
    assert rows == [
        {"file": "v.mp4", "frame": 3, "timestamp": 0.125, "face_id": None, "success": 0, "det_score": None}
        | {"fault": "infer failed: RuntimeError: boom"}
    ]
