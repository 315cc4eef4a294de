"""Synthetic cartoon faces with exact action-unit, expression, valence/arousal and PSPI ground truth.

numpy + OpenCV only (no torch): the tests and the runtime's INT8 calibration import this module.

A face is drawn from a :class:`FaceParams` (identity, nuisance and AU intensities 0-5) in a canonical
frontal frame, then jittered (rotation/scale/translation), lit with a gradient, blurred, noised and
optionally JPEG-compressed. Every action unit changes the pixels in its own place, roughly as FACS
describes it (AU1 inner brow up, AU4 brows down and together with vertical furrows, AU6 cheek bulge and
crow's feet, AU12 lip corners up, AU26 jaw drop, AU43 eyes closed, ...). Expressions are sampled from
EMFACS-like prototypes plus AU noise; a "pain" mode adds AU4, AU6/7, AU9/10 and AU43 so that PSPI spans
0..16. These faces are cartoons: a model trained on them means nothing on real people.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_sdk.contract.card import AU_LABELS, EXPRESSION_LABELS

AU_INDEX = {au: i for i, au in enumerate(AU_LABELS)}
N_AUS = len(AU_LABELS)
OCCURRENCE_THRESHOLD = 1.0  # an AU "occurs" when its intensity is >= 1 (FACS A-level and up)

# EMFACS-like prototypes: (required AUs, optional AUs). Contempt is a unilateral AU12 (see FaceParams).
EXPRESSION_PROTOTYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "neutral": ((), ()),
    "happy": (("AU6", "AU12"), ("AU25",)),
    "sad": (("AU1", "AU4", "AU15"), ("AU17",)),
    "surprise": (("AU1", "AU2", "AU25", "AU26"), ()),
    "fear": (("AU1", "AU2", "AU4", "AU25"), ("AU26",)),
    "disgust": (("AU9", "AU10", "AU15"), ("AU17",)),
    "anger": (("AU4", "AU7"), ("AU17", "AU25")),
    "contempt": (("AU12",), ()),
}
# Circumplex position (valence, arousal) of each expression at full strength.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, -0.1),
    "happy": (0.8, 0.45),
    "sad": (-0.7, -0.45),
    "surprise": (0.15, 0.8),
    "fear": (-0.65, 0.7),
    "disgust": (-0.65, 0.3),
    "anger": (-0.7, 0.7),
    "contempt": (-0.45, 0.15),
}
# Pain faces are drawn on top of one of these expressions (pain is not an expression class).
PAIN_BASE_EXPRESSIONS = ("neutral", "sad", "fear", "disgust", "anger")
PAIN_PROBABILITY = 0.18
BACKGROUNDS = ("solid", "gradient", "noise", "clutter")


@dataclass
class FaceLabels:
    """Ground truth of one rendered face."""

    au_intensity: np.ndarray  # [13] float32 in [0, 5], order AU_LABELS
    expression: int  # index into EXPRESSION_LABELS
    valence_arousal: np.ndarray  # [2] float32 in [-1, 1]
    pspi: float  # AU4 + max(AU6, AU7) + max(AU9, AU10) + clip(AU43, 0, 1), in [0, 16]

    @property
    def au_occurrence(self) -> np.ndarray:
        return (self.au_intensity >= OCCURRENCE_THRESHOLD).astype(np.float32)


@dataclass
class FaceParams:
    """Everything needed to draw one face; :func:`render` is a pure function of it."""

    au: np.ndarray  # [13] intensities 0-5, order AU_LABELS
    expression: int
    valence_arousal: np.ndarray
    contempt_side: int = 0  # 0: AU12 on both sides; -1/+1: only on the image-left/right corner
    skin_bgr: tuple[float, float, float] = (150.0, 180.0, 220.0)
    face_w: float = 0.33  # half axes as a fraction of the image size
    face_h: float = 0.42
    brow_bgr: tuple[float, float, float] = (40.0, 50.0, 60.0)
    brow_thickness: float = 0.025
    iris_bgr: tuple[float, float, float] = (80.0, 60.0, 40.0)
    lip_bgr: tuple[float, float, float] = (90.0, 90.0, 170.0)
    hair: bool = True
    hair_bgr: tuple[float, float, float] = (30.0, 35.0, 45.0)
    hairline: float = 0.55
    eye_gap: float = 0.38
    eye_size: float = 0.22
    mouth_w: float = 0.3
    gaze: float = 0.0
    background: str = "solid"
    bg_colors: tuple[tuple[float, float, float], tuple[float, float, float]] = ((90, 90, 90), (160, 160, 160))
    rotation_deg: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    light: tuple[float, float, float] = (1.0, 0.0, 0.0)  # gain, x slope, y slope
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    jpeg_quality: int = 0  # 0: no JPEG round trip
    noise_seed: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def labels(self) -> FaceLabels:
        au = np.clip(self.au, 0.0, 5.0).astype(np.float32)
        return FaceLabels(au, int(self.expression), self.valence_arousal.astype(np.float32), pspi_from_au(au))


def pspi_from_au(au: np.ndarray) -> float:
    """PSPI of one AU-intensity vector (AU_LABELS order), with AU43 clipped to [0, 1] like the runtime."""

    def g(name: str) -> float:
        return float(au[AU_INDEX[name]])

    return g("AU4") + max(g("AU6"), g("AU7")) + max(g("AU9"), g("AU10")) + min(max(g("AU43"), 0.0), 1.0)


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------
def _skin(rng: np.random.Generator) -> tuple[float, float, float]:
    light = np.array([200.0, 215.0, 250.0])  # BGR, pale
    dark = np.array([35.0, 55.0, 85.0])  # BGR, deep brown
    t = rng.uniform(0.0, 1.0)
    tone = light * (1 - t) + dark * t + rng.normal(0, 8, 3)
    return tuple(float(v) for v in np.clip(tone, 20, 255))


def _color(rng: np.random.Generator, low: float = 0, high: float = 255) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(low, high, 3))


def _sample_aus(rng: np.random.Generator) -> tuple[np.ndarray, int, int, float, bool]:
    """AU intensities, expression index, contempt side, expression strength, pain flag."""
    au = np.zeros(N_AUS, np.float64)
    pain = rng.uniform() < PAIN_PROBABILITY
    name = str(rng.choice(PAIN_BASE_EXPRESSIONS)) if pain else EXPRESSION_LABELS[rng.integers(len(EXPRESSION_LABELS))]
    strength = rng.uniform(0.35, 1.0)
    required, optional = EXPRESSION_PROTOTYPES[name]
    for a in required:
        au[AU_INDEX[a]] = np.clip(5.0 * strength * rng.uniform(0.7, 1.1), 1.0, 5.0)
    for a in optional:
        if rng.uniform() < 0.5:
            au[AU_INDEX[a]] = np.clip(5.0 * strength * rng.uniform(0.4, 1.0), 1.0, 5.0)
    if name == "anger" and au[AU_INDEX["AU17"]] > 0 and au[AU_INDEX["AU25"]] > 0:
        au[AU_INDEX[("AU17", "AU25")[rng.integers(2)]]] = 0.0  # anger: +17 or +25, not both
    # AU noise: a few random AUs at low-to-moderate intensity, any expression.
    for i in np.flatnonzero(rng.uniform(size=N_AUS) < 0.08):
        au[i] = max(au[i], rng.uniform(0.0, 2.5))
    if pain:
        p = rng.uniform(0.3, 1.0)
        au[AU_INDEX["AU4"]] = max(au[AU_INDEX["AU4"]], 5 * p * rng.uniform(0.5, 1.0))
        for pair in (("AU6", "AU7"), ("AU9", "AU10")):
            k = rng.integers(3)  # first, second or both
            for j, a in enumerate(pair):
                if k == 2 or k == j:
                    au[AU_INDEX[a]] = max(au[AU_INDEX[a]], 5 * p * rng.uniform(0.4, 1.0))
        if rng.uniform() < 0.5:
            au[AU_INDEX["AU43"]] = rng.uniform(1.0, 5.0)
    expression = EXPRESSION_LABELS.index(name)
    contempt_side = int(rng.choice((-1, 1))) if name == "contempt" else 0
    return np.clip(au, 0.0, 5.0), expression, contempt_side, float(strength), bool(pain)


def _valence_arousal(name: str, au: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    v0, a0 = CIRCUMPLEX[name]
    pspi = pspi_from_au(au)
    valence = v0 * (0.4 + 0.6 * strength) - 0.05 * pspi
    arousal = a0 * (0.4 + 0.6 * strength) + 0.03 * pspi + 0.03 * (au[AU_INDEX["AU26"]] + au[AU_INDEX["AU25"]])
    va = np.array([valence, arousal]) + rng.normal(0.0, 0.05, 2)
    return np.clip(va, -1.0, 1.0).astype(np.float32)


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Draw one random face (expression, AUs, identity, background, pose and image nuisances)."""
    au, expression, contempt_side, strength, _pain = _sample_aus(rng)
    va = _valence_arousal(EXPRESSION_LABELS[expression], au, strength, rng)
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    return FaceParams(
        au=au.astype(np.float32),
        expression=expression,
        valence_arousal=va,
        contempt_side=contempt_side,
        skin_bgr=_skin(rng),
        face_w=rng.uniform(0.29, 0.36),
        face_h=rng.uniform(0.37, 0.44),
        brow_bgr=_color(rng, 10, 90),
        brow_thickness=rng.uniform(0.018, 0.035),
        iris_bgr=_color(rng, 20, 140),
        lip_bgr=(rng.uniform(60, 120), rng.uniform(50, 110), rng.uniform(110, 200)),
        hair=bool(rng.uniform() < 0.7),
        hair_bgr=_color(rng, 10, 160),
        hairline=rng.uniform(0.5, 0.7),
        eye_gap=rng.uniform(0.34, 0.42),
        eye_size=rng.uniform(0.19, 0.25),
        mouth_w=rng.uniform(0.26, 0.36),
        gaze=rng.uniform(-0.3, 0.3),
        background=background,
        bg_colors=(_color(rng), _color(rng)),
        rotation_deg=rng.normal(0.0, 5.0),
        scale=rng.uniform(0.9, 1.1),
        shift=(rng.normal(0.0, 0.03), rng.normal(0.0, 0.03)),
        light=(rng.uniform(0.75, 1.2), rng.uniform(-0.35, 0.35), rng.uniform(-0.25, 0.25)),
        blur_sigma=float(rng.choice((0.0, rng.uniform(0.3, 1.2)))),
        noise_std=rng.uniform(0.0, 7.0),
        jpeg_quality=int(rng.integers(35, 95)) if rng.uniform() < 0.3 else 0,
        noise_seed=int(rng.integers(2**31)),
    )


def neutral_params(**changes: object) -> FaceParams:
    """A clean neutral face with no nuisances; tests turn single AUs on with ``au=...``."""
    params = FaceParams(
        au=np.zeros(N_AUS, np.float32),
        expression=EXPRESSION_LABELS.index("neutral"),
        valence_arousal=np.zeros(2, np.float32),
    )
    for key, value in changes.items():
        setattr(params, key, value)
    return params


# ---------------------------------------------------------------------------------------------
# Drawing (canonical frame, pixel coordinates as float; cv2 draws with 4 fractional bits)
# ---------------------------------------------------------------------------------------------
_SHIFT = 4
_ONE = 1 << _SHIFT


def _p(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _mix(a: tuple[float, ...], b: tuple[float, ...], t: float) -> tuple[float, float, float]:
    t = float(min(max(t, 0.0), 1.0))
    return tuple(float(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _line(img: np.ndarray, pts: np.ndarray, color: tuple[float, ...], thickness: float) -> None:
    cv2.polylines(img, [_p(pts)], False, color, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _fill(img: np.ndarray, pts: np.ndarray, color: tuple[float, ...]) -> None:
    cv2.fillPoly(img, [_p(pts)], color, cv2.LINE_AA, _SHIFT)


def _ellipse(img, center, axes, color, thickness=-1, angle=0.0, start=0.0, end=360.0) -> None:  # noqa: ANN001
    c = (int(round(center[0] * _ONE)), int(round(center[1] * _ONE)))
    ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
    cv2.ellipse(img, c, ax, angle, start, end, color, thickness, cv2.LINE_AA, _SHIFT)


def _background(p: FaceParams, size: int, rng: np.random.Generator) -> np.ndarray:
    c0, c1 = np.array(p.bg_colors[0], np.float32), np.array(p.bg_colors[1], np.float32)
    if p.background == "gradient":
        t = np.linspace(0.0, 1.0, size, dtype=np.float32)
        t = t[None, :, None] if rng.uniform() < 0.5 else t[:, None, None]
        img = c0 * (1 - t) + c1 * t
        return np.broadcast_to(img, (size, size, 3)).astype(np.uint8)
    if p.background == "noise":
        cells = int(rng.integers(3, 12))
        low = rng.uniform(0, 1, (cells, cells, 1)).astype(np.float32)
        low = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)[:, :, None]
        return np.clip(c0 * (1 - low) + c1 * low, 0, 255).astype(np.uint8)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = np.round(c0).astype(np.uint8)
    if p.background == "clutter":
        for _ in range(int(rng.integers(4, 10))):
            color = tuple(float(v) for v in rng.uniform(0, 255, 3))
            x, y = rng.uniform(0, size, 2)
            w, h = rng.uniform(0.05, 0.4, 2) * size
            if rng.uniform() < 0.5:
                cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), color, -1)
            else:
                cv2.circle(img, (int(x), int(y)), int(w / 2), color, -1, cv2.LINE_AA)
    return img


def _draw_brows_and_forehead(img: np.ndarray, p: FaceParams, g: dict[str, float]) -> None:
    cx, w, h, s = g["cx"], g["w"], g["h"], g["s"]
    a1, a2, a4 = (float(p.au[AU_INDEX[a]]) for a in ("AU1", "AU2", "AU4"))
    brow_y = g["eye_y"] - 0.2 * h
    t = np.linspace(0.0, 1.0, 6)
    wrinkle = _mix(p.skin_bgr, (20, 25, 40), 1.0)
    # Forehead wrinkles: the centre deepens with AU1, the sides with AU2.
    for k in range(2):
        y = brow_y - (0.16 + 0.07 * k) * h
        xs = np.linspace(-0.35, 0.35, 8) * w
        pts = np.stack([cx + xs, y - 0.02 * h * np.cos(xs / w * 3)], 1)
        _line(img, pts[2:6], _mix(p.skin_bgr, wrinkle, 0.09 * a1), 0.012 * s)
        _line(img, pts[:3], _mix(p.skin_bgr, wrinkle, 0.09 * a2), 0.012 * s)
        _line(img, pts[5:], _mix(p.skin_bgr, wrinkle, 0.09 * a2), 0.012 * s)
    # Vertical furrows between the brows (AU4).
    if a4 > 0.2:
        for dx in (-0.06, 0.06):
            pts = np.array([[cx + dx * w, brow_y - 0.04 * h], [cx + dx * 0.7 * w, brow_y + 0.09 * h]])
            _line(img, pts, _mix(p.skin_bgr, wrinkle, 0.11 * a4), 0.015 * s)
    for side in (-1, 1):
        x = cx + side * w * (0.12 + 0.55 * t) - side * 0.025 * w * a4 * (1 - t)
        y = brow_y - 0.05 * h * np.sin(np.pi * (0.3 + 0.7 * t))
        y = y - 0.04 * h * a1 * (1 - t) ** 1.5 - 0.04 * h * a2 * t**1.5 + 0.028 * h * a4 * (1 - 0.6 * t)
        thickness = p.brow_thickness * s * (1.0 - 0.4 * t)
        for i in range(len(t) - 1):
            seg = np.array([[x[i], y[i]], [x[i + 1], y[i + 1]]])
            _line(img, seg, p.brow_bgr, thickness[i])


def _draw_eyes(img: np.ndarray, p: FaceParams, g: dict[str, float]) -> None:
    cx, w, h, s = g["cx"], g["w"], g["h"], g["s"]
    a6, a7, a43 = (float(p.au[AU_INDEX[a]]) for a in ("AU6", "AU7", "AU43"))
    closure = min(a43 / 1.5, 1.0)  # fully shut from intensity 1.5; PSPI counts AU43 >= 1 as closed
    ew = p.eye_size * w
    up = 0.085 * h * (1 - 0.07 * a7) * (1 - closure)
    low = 0.06 * h * (1 - 0.1 * a7) * (1 - 0.09 * a6) * (1 - closure)
    xs = np.linspace(-1.0, 1.0, 9)
    lid_color = _mix(p.skin_bgr, (10, 10, 20), 0.85)
    crease = _mix(p.skin_bgr, (20, 25, 40), 0.35)
    for side in (-1, 1):
        ex, ey = cx + side * p.eye_gap * w, g["eye_y"]
        upper = np.stack([ex + xs * ew, ey - up * (1 - xs**2) + 0.012 * h * xs * side], 1)
        lower = np.stack([ex + xs * ew, ey + low * (1 - xs**2) ** 0.8 + 0.012 * h * xs * side], 1)
        if up + low > 0.02 * h:
            _fill(img, np.concatenate([upper, lower[::-1]]), (235, 240, 240))
            r = 0.42 * ew
            ix = ex + p.gaze * ew * 0.5
            _ellipse(img, (ix, ey), (r, r), p.iris_bgr)
            _ellipse(img, (ix, ey), (0.45 * r, 0.45 * r), (15, 15, 15))
            # Lids cover the iris outside the aperture.
            _fill(img, np.concatenate([upper, [[ex + ew, ey - r - 2], [ex - ew, ey - r - 2]]]), p.skin_bgr)
            _fill(img, np.concatenate([lower, [[ex + ew, ey + r + 2], [ex - ew, ey + r + 2]]]), p.skin_bgr)
        _line(img, upper, lid_color, 0.018 * s)
        _line(img, lower, _mix(p.skin_bgr, lid_color, 0.5), 0.008 * s)
        # Upper lid crease, pushed down as the lid tightens or closes.
        crease_pts = np.stack([ex + xs[1:-1] * ew, ey - (up + 0.05 * h) * (1 - xs[1:-1] ** 2) ** 0.5], 1)
        _line(img, crease_pts, crease, 0.008 * s)
        # AU6: cheek bulge under the eye and crow's feet at the outer corner.
        if a6 > 0.2:
            bulge = np.stack([ex + xs[1:-1] * ew * 1.1, ey + low + 0.06 * h - 0.03 * h * (1 - xs[1:-1] ** 2)], 1)
            _line(img, bulge, _mix(p.skin_bgr, (30, 30, 60), 0.08 * a6), 0.014 * s)
            cheek_c = (ex + side * 0.05 * w, ey + 0.3 * h)
            _ellipse(img, cheek_c, (0.22 * w, 0.12 * h), _mix(p.skin_bgr, (120, 110, 235), 0.05 * a6))
            ox = ex + side * ew * 1.1
            for ang in (-0.5, 0.0, 0.5):
                d = np.array([side * np.cos(ang), np.sin(ang)])
                seg = np.array([[ox, ey] + d * 0.03 * w, [ox, ey] + d * 0.12 * w])
                _line(img, seg, _mix(p.skin_bgr, (20, 25, 40), 0.1 * a6), 0.01 * s)


def _draw_nose(img: np.ndarray, p: FaceParams, g: dict[str, float]) -> None:
    cx, w, h, s = g["cx"], g["w"], g["h"], g["s"]
    a9, a10 = float(p.au[AU_INDEX["AU9"]]), float(p.au[AU_INDEX["AU10"]])
    ny = g["nose_y"] - 0.012 * h * a9 - 0.006 * h * a10
    shade = _mix(p.skin_bgr, (20, 25, 40), 0.3)
    for side in (-1, 1):
        _line(img, np.array([[cx + side * 0.07 * w, g["eye_y"]], [cx + side * 0.09 * w, ny - 0.04 * h]]), shade, 1)
        wing = (cx + side * (0.12 + 0.006 * a9) * w, ny)
        _ellipse(img, wing, (0.06 * w, 0.05 * h), shade, max(1, int(0.012 * s)), 0, 200 if side < 0 else -20, 340)
        _ellipse(img, (cx + side * 0.05 * w, ny + 0.02 * h), (0.03 * w, 0.015 * h), (25, 25, 35))
    # AU9: horizontal wrinkles across the bridge.
    if a9 > 0.2:
        wrinkle = _mix(p.skin_bgr, (20, 25, 40), 0.1 * a9)
        for k in range(3):
            y = g["eye_y"] + (0.0 + 0.045 * k) * h
            pts = np.array([[cx - 0.1 * w, y + 0.01 * h], [cx, y - 0.008 * h], [cx + 0.1 * w, y + 0.01 * h]])
            _line(img, pts, wrinkle, 0.012 * s)
    # Nasolabial folds deepen with AU10 (and a little with AU12, AU9).
    a12 = float(p.au[AU_INDEX["AU12"]])
    depth = 0.11 * a10 + 0.04 * a12 + 0.03 * a9
    for side in (-1, 1):
        pts = np.array(
            [
                [cx + side * 0.17 * w, ny - 0.02 * h],
                [cx + side * 0.27 * w, g["mouth_y"] - 0.06 * h],
                [cx + side * (p.mouth_w + 0.06) * w, g["mouth_y"] + 0.06 * h],
            ]
        )
        _line(img, pts, _mix(p.skin_bgr, (20, 25, 40), 0.06 + depth), 0.014 * s)


def _draw_mouth(img: np.ndarray, p: FaceParams, g: dict[str, float]) -> None:
    cx, w, h, s = g["cx"], g["w"], g["h"], g["s"]
    au = {a: float(p.au[AU_INDEX[a]]) for a in ("AU10", "AU12", "AU15", "AU17", "AU25", "AU26")}
    my, mw = g["mouth_y"], p.mouth_w * w
    gap = 0.014 * h * au["AU25"] + 0.03 * h * au["AU26"]
    xs = np.linspace(-1.0, 1.0, 13)
    # Per-side corner offsets (contempt: AU12 on one side only).
    pull = np.array([au["AU12"] if p.contempt_side in (0, side) else 0.0 for side in (-1, 1)])
    corner_dy = -0.035 * h * pull + 0.035 * h * au["AU15"]
    corner_dx = 0.02 * w * pull - 0.01 * w * au["AU15"]
    side_t = np.where(xs < 0, 0, 1)
    dy = corner_dy[side_t] * np.abs(xs) ** 2
    x = cx + xs * (mw + corner_dx[side_t] * np.abs(xs))
    bow = 1 - xs**2
    stomion_up = my + dy - 0.5 * gap * bow - 0.01 * h * au["AU10"] * bow
    stomion_low = my + dy + 0.5 * gap * bow**0.7 - 0.012 * h * au["AU17"] * bow
    upper_top = stomion_up - (0.05 + 0.012 * au["AU10"]) * h * bow**0.6 + 0.015 * h * np.exp(-((xs / 0.15) ** 2))
    lower_bottom = stomion_low + (0.065 + 0.006 * au["AU17"]) * h * bow**0.7
    if gap > 0.01 * h:
        _fill(img, np.concatenate([np.stack([x, stomion_up], 1), np.stack([x, stomion_low], 1)[::-1]]), (30, 20, 60))
        teeth_low = np.minimum(stomion_up + 0.035 * h * bow, stomion_low)
        _fill(img, np.concatenate([np.stack([x, stomion_up], 1), np.stack([x, teeth_low], 1)[::-1]]), (225, 235, 235))
    _fill(img, np.concatenate([np.stack([x, upper_top], 1), np.stack([x, stomion_up], 1)[::-1]]), p.lip_bgr)
    _fill(img, np.concatenate([np.stack([x, stomion_low], 1), np.stack([x, lower_bottom], 1)[::-1]]), p.lip_bgr)
    _line(img, np.stack([x, stomion_up], 1), _mix(p.lip_bgr, (20, 10, 30), 0.6), 0.012 * s)
    # AU17: chin boss pushed up, with a deepened mentolabial furrow and chin dimpling.
    if au["AU17"] > 0.2:
        chin = _mix(p.skin_bgr, (20, 25, 40), 0.08 * au["AU17"])
        fy = lower_bottom.max() + 0.04 * h
        _line(
            img,
            np.array([[cx - 0.18 * w, fy + 0.01 * h], [cx, fy - 0.01 * h], [cx + 0.18 * w, fy + 0.01 * h]]),
            chin,
            0.015 * s,
        )
        for dx in (-0.07, 0.0, 0.07):
            _ellipse(img, (cx + dx * w, fy + 0.07 * h), (0.02 * w, 0.015 * h), chin)


def render(params: FaceParams, size: int = 128) -> tuple[np.ndarray, FaceLabels]:
    """Draw ``params`` as a ``size`` x ``size`` BGR uint8 image; returns (image, ground truth)."""
    rng = np.random.default_rng(params.noise_seed)
    img = _background(params, size, rng).copy()
    s = float(size)
    w, h = params.face_w * s, params.face_h * s
    cx, cy = 0.5 * s, 0.52 * s
    jaw = 0.035 * h * float(params.au[AU_INDEX["AU26"]])
    g = {"cx": cx, "w": w, "h": h, "s": s, "eye_y": cy - 0.1 * h, "nose_y": cy + 0.22 * h, "mouth_y": cy + 0.5 * h}
    g["mouth_y"] += 0.3 * jaw
    skin = params.skin_bgr
    neck = _mix(skin, (0, 0, 0), 0.25)
    cv2.rectangle(img, (int(cx - 0.55 * w), int(cy + 0.5 * h)), (int(cx + 0.55 * w), size), neck, -1)
    for side in (-1, 1):
        _ellipse(img, (cx + side * w * 0.97, cy), (0.12 * w, 0.2 * h), _mix(skin, (0, 0, 0), 0.1))
    _ellipse(img, (cx, cy), (w, h), skin, -1, 0, 180, 360)
    _ellipse(img, (cx, cy), (w, h + jaw), skin, -1, 0, 0, 180)
    if params.hair:
        _ellipse(img, (cx, cy - params.hairline * h), (1.04 * w, 0.5 * h), params.hair_bgr, -1, 0, 180, 360)
    _draw_brows_and_forehead(img, params, g)
    _draw_eyes(img, params, g)
    _draw_nose(img, params, g)
    _draw_mouth(img, params, g)

    m = cv2.getRotationMatrix2D((cx, cy), params.rotation_deg, params.scale)
    m[:, 2] += np.array(params.shift) * s
    img = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    gain, gx, gy = params.light
    ramp_x = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    light = gain + gx * ramp_x[None, :] + gy * ramp_x[:, None]
    out = img.astype(np.float32) * light[:, :, None]
    if params.blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), params.blur_sigma)
    if params.noise_std > 0:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(params.noise_std)
    img = np.clip(out, 0, 255).astype(np.uint8)
    if params.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img, params.labels


@dataclass
class SyntheticDataset:
    """A rendered set: images [N, H, W, 3] BGR uint8 and per-face label arrays."""

    images: np.ndarray
    au_intensity: np.ndarray  # [N, 13] float32
    au_occurrence: np.ndarray  # [N, 13] float32 (intensity >= 1)
    expression: np.ndarray  # [N] int64
    valence_arousal: np.ndarray  # [N, 2] float32
    pspi: np.ndarray  # [N] float32

    def __len__(self) -> int:
        return len(self.images)


def render_dataset(n: int, seed: int, size: int = 128) -> SyntheticDataset:
    """Render ``n`` random faces; identical output for identical (n, seed, size)."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    au = np.empty((n, N_AUS), np.float32)
    expression = np.empty(n, np.int64)
    va = np.empty((n, 2), np.float32)
    pspi = np.empty(n, np.float32)
    for i in range(n):
        images[i], labels = render(sample_params(rng), size)
        au[i], expression[i], va[i], pspi[i] = (
            labels.au_intensity,
            labels.expression,
            labels.valence_arousal,
            labels.pspi,
        )
    occurrence = (au >= OCCURRENCE_THRESHOLD).astype(np.float32)
    return SyntheticDataset(images, au, occurrence, expression, va, pspi)
