"""The registry: public models edge-sdk can pull, each pinned by hash, with licence and card.

Adding a model = adding a row to :data:`REGISTRY`. A row pins the file either by sha256 (preferred)
or, until a sha256 has been recorded from a verified copy, by the git blob id (SHA-1) that the
upstream GitHub repository publishes for the file. Face models (``kind="face_model"``) carry a
hand-written :class:`~edge_sdk.contract.card.ModelCard`; it is written beside the pulled file as
``<stem>.card.json`` with the file's sha256, so the runtime loads it like any sidecar card.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sdk.contract.card import ExportInfo, HeadSpec, InputSpec, ModelCard, Provenance
from edge_sdk.errors import InputError

KINDS = ("face_detector", "face_model")


@dataclass(frozen=True)
class RegistryEntry:
    """One pullable model."""

    name: str
    kind: str  # one of KINDS
    filename: str  # name of the file in the cache (and upstream)
    url: str
    license: str
    license_url: str
    homepage: str
    description: str
    sha256: str | None = None  # pinned sha256; None until recorded from a verified copy
    git_blob_sha1: str | None = None  # upstream git blob id, verifies a copy while sha256 is unpinned
    card: ModelCard | None = None  # for face models: written as the sidecar card on pull
    pin_note: str = ""

    def __post_init__(self) -> None:
        if self.sha256 is None and self.git_blob_sha1 is None:
            raise ValueError(f"registry entry {self.name}: needs a sha256 or a git blob id")
        if self.kind not in KINDS:
            raise ValueError(f"registry entry {self.name}: kind must be one of {KINDS}")

    @property
    def pin(self) -> str:
        """The hash a copy must match: ``sha256 <hex>`` or ``git blob <hex>``."""
        return f"sha256 {self.sha256}" if self.sha256 else f"git blob {self.git_blob_sha1}"

    @property
    def pinned_by(self) -> str:
        """How a copy is verified, for display."""
        if self.sha256:
            return f"sha256 {self.sha256}"
        return f"git blob {self.git_blob_sha1} (sha256 not yet pinned: recorded on first verified pull)"


# HSEmotion class order (angry, contempt, disgust, fear, happy, neutral, sad, surprise), in the
# label vocabulary of edge_sdk.contract.card.EXPRESSION_LABELS.
HSEMOTION_EXPRESSIONS = ("anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
HSEMOTION_REPO = "https://github.com/av-savchenko/face-emotion-recognition"
HSEMOTION_RAW = f"{HSEMOTION_REPO}/raw/main/models/affectnet_emotions/onnx"
HSEMOTION_LICENSE_URL = f"{HSEMOTION_REPO}/blob/main/LICENSE"
HSEMOTION_PIN_NOTE = (
    "No network where this registry was written, so the sha256 is not pinned yet: a pull verifies the "
    "download against the upstream git blob id (SHA-1), then records its sha256 in the cache manifest "
    "and prints it so it can be pinned here."
)


def _hsemotion_card(
    name: str, size: int, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> ModelCard:
    """Card of an HSEmotion multitask ONNX: one output tensor = 8 expression logits + valence + arousal.

    Preprocessing follows the upstream ONNX recognisers: RGB, resize to ``size`` x ``size``,
    ``(pixel / 255 - mean) / std``, NCHW float32, input tensor ``input``. The output tensor is named
    ``output`` by upstream's ``convert_pt_to_onnx.py``; the pull checks the name against the real file
    (and rewrites the card if the model has a single output under another name).
    """
    return ModelCard(
        name=name,
        description=(
            "HSEmotion multitask model (A. Savchenko): 8 facial expressions (AffectNet) + valence/arousal. "
            "No action units, so no PSPI pain score."
        ),
        input=InputSpec(name="input", height=size, width=size, layout="NCHW", color_order="RGB", mean=mean, std=std),
        heads=(
            HeadSpec(
                name="expression",
                kind="expression",
                labels=HSEMOTION_EXPRESSIONS,
                activation="softmax",
                output="output",
                columns=(0, 8),
            ),
            HeadSpec(
                name="valence_arousal",
                kind="valence_arousal",
                labels=("valence", "arousal"),
                activation="clamp",
                output="output",
                columns=(8, 10),
                clamp=(-1.0, 1.0),
            ),
        ),
        provenance=Provenance(
            source=HSEMOTION_REPO,
            synthetic_demo=False,
            training_data="AffectNet (expressions, valence, arousal); see the upstream repository",
            license="Apache-2.0",
        ),
        export=ExportInfo(target=None, precision="fp32", tool="upstream ONNX export (torch.onnx, opset 11)"),
    )


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

REGISTRY: dict[str, RegistryEntry] = {
    e.name: e
    for e in (
        RegistryEntry(
            name="yunet",
            kind="face_detector",
            filename="face_detection_yunet_2023mar.onnx",
            url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            license="MIT",
            license_url="https://github.com/opencv/opencv_zoo/blob/main/models/face_detection_yunet/LICENSE",
            homepage="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
            description="YuNet face detector (OpenCV Zoo, 2023mar) for cv2.FaceDetectorYN; 5 landmarks per face.",
        ),
        RegistryEntry(
            name="hsemotion-enet-b0-va",
            kind="face_model",
            filename="enet_b0_8_va_mtl.onnx",
            url=f"{HSEMOTION_RAW}/enet_b0_8_va_mtl.onnx",
            git_blob_sha1="7ce9d6dd5b82b260bc19bfe7822a6ffa1abb6011",
            license="Apache-2.0",
            license_url=HSEMOTION_LICENSE_URL,
            homepage=HSEMOTION_REPO,
            description="HSEmotion EfficientNet-B0, 224x224: 8 expressions + valence/arousal (no AUs, no pain).",
            card=_hsemotion_card("hsemotion-enet-b0-va", 224, IMAGENET_MEAN, IMAGENET_STD),
            pin_note=HSEMOTION_PIN_NOTE,
        ),
        RegistryEntry(
            name="hsemotion-mbf-va",
            kind="face_model",
            filename="mbf_va_mtl.onnx",
            url=f"{HSEMOTION_RAW}/mbf_va_mtl.onnx",
            git_blob_sha1="194db927ec135679e5cd0a267c5605e2e9d68e7e",
            license="Apache-2.0",
            license_url=HSEMOTION_LICENSE_URL,
            homepage=HSEMOTION_REPO,
            description="HSEmotion MobileFaceNet, 112x112: 8 expressions + valence/arousal (no AUs, no pain).",
            card=_hsemotion_card("hsemotion-mbf-va", 112, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            pin_note=HSEMOTION_PIN_NOTE,
        ),
    )
}


def get_entry(name: str, registry: dict[str, RegistryEntry] | None = None) -> RegistryEntry:
    """The registry entry called ``name``, or an InputError listing the known names."""
    table = REGISTRY if registry is None else registry
    try:
        return table[name]
    except KeyError:
        raise InputError(f"unknown model '{name}'; `edge-sdk models list` shows: {', '.join(table)}") from None
