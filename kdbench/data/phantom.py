"""Synthetic 2D cardiac CT phantom with the seven CHD68 structures, for tests and smoke runs.

The slices are drawn from ellipses and circles. They are synthetic and prove nothing about
segmentation accuracy on real scans: use them to check that code runs, not to compare methods.
"""

from __future__ import annotations

import numpy as np

from kdbench.data import register_dataset
from kdbench.data.base import SliceSet
from kdbench.data.preprocess import window_hu
from kdbench.errors import ConfigError

CLASS_NAMES = [
    "background",
    "left_ventricle",
    "right_ventricle",
    "left_atrium",
    "right_atrium",
    "myocardium",
    "aorta",
    "pulmonary_artery",
]
BACKGROUND, LV, RV, LA, RA, MYOCARDIUM, AORTA, PA = range(len(CLASS_NAMES))
HU_WINDOW = (-200.0, 600.0)  # window width 800 HU at level 200, as for contrast CT of the heart

# Heart-local layout in units of the half image width. u points to image right (the patient's
# left in radiological display), v points down (posterior). Each structure is an ellipse with
# centre (u, v), semi-axes (a, b), and the slice levels (0 = ventricle apex, 1 = great vessels)
# between which it appears. Structures later in the list are painted over earlier ones, so the
# myocardium ring covers the edge of the right ventricle and forms the septum.
_STRUCTURES = (
    # class, u, v, a, b, level low, level high, tapers (chamber) or keeps its radius (vessel)
    (RV, -0.13, -0.10, 0.16, 0.10, -0.10, 0.75, True),
    (RA, -0.21, 0.09, 0.11, 0.12, 0.30, 0.85, True),
    (LA, 0.07, 0.22, 0.13, 0.08, 0.35, 0.90, True),
    (MYOCARDIUM, 0.12, 0.02, 0.20, 0.18, -0.15, 0.70, True),
    (LV, 0.12, 0.02, 0.13, 0.11, -0.05, 0.65, True),
    (PA, 0.11, -0.20, 0.075, 0.075, 0.60, 1.10, False),
    (AORTA, -0.02, -0.04, 0.085, 0.085, 0.50, 1.10, False),
    (AORTA, 0.10, 0.30, 0.055, 0.055, -1.00, 2.00, False),  # descending aorta, every level
)
_LEFT_HEART = (LV, LA, AORTA)  # filled with contrast first in the arterial phase
_RIGHT_HEART = (RV, RA, PA)


@register_dataset("synthetic")
def generate_phantom(
    n_patients: int = 12,
    slices_per_patient: int = 6,
    image_size: int = 128,
    seed: int = 0,
    noise_hu: float = 25.0,
) -> SliceSet:
    """Generate seeded synthetic axial cardiac CT slices with labels of the CHD68 structures.

    Each patient has its own body size, heart position, rotation, size and contrast level. Its
    slices are spread from the ventricle apex to the great vessels, so the chambers and vessels
    present vary with the slice. HU values: air -1000, lungs about -800, soft tissue 40, spine
    700, myocardium about 100, contrast-filled blood 180 to 340. Gaussian noise with standard
    deviation ``noise_hu`` is added before the HU window (-200, 600) is scaled to [0, 1].

    The result is synthetic and proves nothing about accuracy on real CT. The same arguments
    give identical arrays, and patient ``p`` depends only on ``seed``, ``p``, the slice count
    and the image size, so adding patients leaves the existing ones unchanged.

    Returns:
        Images float32 ``(n_patients * slices_per_patient, 1, image_size, image_size)`` in
        [0, 1], labels int64 with the 8 classes of ``CLASS_NAMES``, patient ids ``synth_p00``
        and so on, and one case id per slice, ``synth_p00_s0`` and so on.

    Raises:
        ConfigError: for fewer than 1 patient or slice, or an image size below 8 pixels.
    """
    if n_patients < 1 or slices_per_patient < 1 or image_size < 8:
        raise ConfigError(
            f"need n_patients >= 1, slices_per_patient >= 1 and image_size >= 8, got "
            f"{n_patients}, {slices_per_patient} and {image_size}"
        )

    streams = np.random.SeedSequence(seed).spawn(n_patients)
    images = np.empty((n_patients, slices_per_patient, image_size, image_size), np.float32)
    labels = np.empty((n_patients, slices_per_patient, image_size, image_size), np.int64)
    for patient, stream in enumerate(streams):
        rng = np.random.default_rng(stream)
        hu, label = _draw_patient(rng, slices_per_patient, image_size)
        hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
        images[patient] = window_hu(hu, *HU_WINDOW)
        labels[patient] = label

    width = max(2, len(str(n_patients - 1)))
    patient_names = [f"synth_p{p:0{width}d}" for p in range(n_patients)]
    return SliceSet(
        images=images.reshape(-1, 1, image_size, image_size),
        labels=labels.reshape(-1, image_size, image_size),
        case_ids=[f"{name}_s{s}" for name in patient_names for s in range(slices_per_patient)],
        patient_ids=[name for name in patient_names for _ in range(slices_per_patient)],
        class_names=list(CLASS_NAMES),
        source=f"synthetic phantom (seed {seed})",
        meta={
            "generator": "synthetic",
            "n_patients": n_patients,
            "slices_per_patient": slices_per_patient,
            "image_size": image_size,
            "seed": seed,
            "noise_hu": noise_hu,
            "hu_window": list(HU_WINDOW),
        },
    )


def _draw_patient(
    rng: np.random.Generator, n_slices: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one patient's slices: HU float32 and labels int64, both ``(S, size, size)``."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(axis, axis, indexing="ij")  # rows run anterior to posterior

    # Per-patient anatomy, then per-slice jitter; every parameter is an (S, 1, 1) array.
    def per_slice(patient_value: float, jitter: float) -> np.ndarray:
        values = patient_value + rng.uniform(-jitter, jitter, n_slices)
        return values.astype(np.float32)[:, None, None]

    body_a = per_slice(rng.uniform(0.80, 0.92), 0.01)
    body_b = per_slice(rng.uniform(0.60, 0.72), 0.01)
    lung_hu = per_slice(rng.uniform(-850.0, -750.0), 10.0)
    heart_u = per_slice(rng.uniform(0.02, 0.12), 0.02)
    heart_v = per_slice(rng.uniform(-0.08, 0.02), 0.02)
    heart_scale = per_slice(rng.uniform(1.35, 1.65), 0.05)
    heart_angle = per_slice(rng.uniform(-0.30, 0.30), 0.05)
    left_blood_hu = rng.uniform(260.0, 340.0)
    right_blood_hu = left_blood_hu - rng.uniform(0.0, 80.0)
    myocardium_hu = rng.uniform(85.0, 120.0)

    spacing = 1.0 / n_slices
    levels = (np.arange(n_slices) + 0.5) * spacing + rng.uniform(-0.3, 0.3, n_slices) * spacing
    levels = levels.astype(np.float32)[:, None, None]

    hu = np.full((n_slices, size, size), -1000.0, np.float32)
    hu[_ellipse(x, y, 0.0, 0.0, body_a, body_b)] = 40.0
    for side in (-1.0, 1.0):
        lung = _ellipse(x, y, side * 0.47 * body_a, -0.05, 0.30 * body_a, 0.72 * body_b)
        hu = np.where(lung, lung_hu, hu)
    hu[_ellipse(x, y, 0.5 * heart_u, heart_v, 0.24 * heart_scale, 0.50 * body_b)] = 40.0
    hu[_ellipse(x, y, 0.0, body_b - 0.18, 0.11, 0.10)] = 700.0  # vertebral body

    # Heart-local coordinates: rotate about the heart centre, then divide by its scale.
    cos, sin = np.cos(heart_angle), np.sin(heart_angle)
    dx, dy = x - heart_u, y - heart_v
    u = (cos * dx + sin * dy) / heart_scale
    v = (-sin * dx + cos * dy) / heart_scale

    label = np.zeros((n_slices, size, size), np.int64)
    for structure in _STRUCTURES:
        label[_structure_mask(u, v, levels, rng, *structure)] = structure[0]

    class_hu = np.zeros(len(CLASS_NAMES), np.float32)
    class_hu[list(_LEFT_HEART)] = left_blood_hu
    class_hu[list(_RIGHT_HEART)] = right_blood_hu
    class_hu[MYOCARDIUM] = myocardium_hu
    hu = np.where(label > 0, class_hu[label], hu)
    return hu, label


def _structure_mask(
    u: np.ndarray,
    v: np.ndarray,
    levels: np.ndarray,
    rng: np.random.Generator,
    label: int,
    centre_u: float,
    centre_v: float,
    a: float,
    b: float,
    level_low: float,
    level_high: float,
    tapers: bool,
) -> np.ndarray:
    """Return the boolean ``(S, H, W)`` mask of one structure at each slice level.

    A chamber's radius follows a half ellipse over its level range, so it is largest in the
    middle and absent below 0.3 of its full size. A vessel keeps its radius over its range.
    """
    n_slices = len(levels)
    position = (2.0 * levels - level_low - level_high) / (level_high - level_low)
    inside = np.abs(position) < 1.0
    if tapers:
        factor = np.sqrt(np.clip(1.0 - position**2, 0.0, 1.0))
        inside &= factor >= 0.3
    else:
        factor = np.ones_like(position)

    jitter = rng.uniform(0.9, 1.1, (n_slices, 1, 1)).astype(np.float32)
    shift_u = rng.uniform(-0.015, 0.015, (n_slices, 1, 1)).astype(np.float32)
    shift_v = rng.uniform(-0.015, 0.015, (n_slices, 1, 1)).astype(np.float32)
    scale = np.maximum(factor * jitter, 1e-3)
    mask = _ellipse(u, v, centre_u + shift_u, centre_v + shift_v, a * scale, b * scale)
    return mask & inside


def _ellipse(x, y, centre_x, centre_y, semi_x, semi_y) -> np.ndarray:
    """Return the boolean mask of points inside an axis-aligned ellipse (arguments broadcast)."""
    return ((x - centre_x) / semi_x) ** 2 + ((y - centre_y) / semi_y) ** 2 <= 1.0
