"""Offline analysis of recordings and image folders into per-frame, per-face tables.

``analyze_video(path)`` (library) and ``edge-sdk analyze INPUT... --out x.csv|x.parquet`` (command line)
give the same rows: :mod:`edge_sdk.store.table` defines the columns. Work is cut into chunks of frames
(:mod:`edge_sdk.analysis.work`) that one process, a local process pool (``--workers N``) or a Ray cluster
(:mod:`edge_sdk.analysis.ray_data`, ``--ray ADDRESS``) analyse with the same result.
"""

from __future__ import annotations

from edge_sdk.analysis.video import AnalyzedFrame, VideoAnalysis, analyze_video
from edge_sdk.analysis.work import AnalyzeSettings

__all__ = ["AnalyzeSettings", "AnalyzedFrame", "VideoAnalysis", "analyze_video"]
