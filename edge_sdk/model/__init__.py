"""FaceModel (an artifact on its backend, behind one call) and model-name resolution.

The contract it runs (card, processing) lives in :mod:`edge_sdk.contract`; its names are re-exported
here so ``from edge_sdk.model import ModelCard`` keeps working.
"""

from edge_sdk import contract as _contract
from edge_sdk.contract import *  # noqa: F403  (the same public names, one list: contract.__all__)

__all__ = list(_contract.__all__)
