"""The target table drives CLI, export and benchmark."""

import pytest

from edge_sdk.backend import BACKENDS, FORMATS
from edge_sdk.errors import InputError
from edge_sdk.targets import TARGETS, get_target


def test_every_target_maps_to_a_known_backend_and_format() -> None:
    assert set(TARGETS) == {"jetson", "rpi", "openvino", "cpu"}
    for target in TARGETS.values():
        assert target.backend in BACKENDS
        assert FORMATS[target.artifact_suffix] == target.backend


def test_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="unknown target 'tpu'; expected one of: jetson, rpi, openvino, cpu"):
        get_target("tpu")
