"""Chest-film-like images: findings follow U, a corner marker and the intensity profile follow C.

``render`` draws a grayscale radiograph caricature on an ``size x size`` grid in 12-bit units (0..4095): a thorax,
two lung fields, mediastinum and spine, a heart whose width grows with cardiomegaly, diaphragm domes, ribs, and
the study's findings (consolidation blobs, perihilar edema haze, a basal effusion meniscus, basal atelectasis
bands, a pneumothorax rim, tube and line). C leaves two marks a CNN can pick up:

- a lead-marker block in the top-left corner for the medical campus (C = 1) and a round marker top-right for the
  surgical campus (C = 0); with probability 1 - (0.5 + 0.5 tanh(2 c_marks)) the marker is the other campus's;
- a gamma 1 + 0.15 tanh(c_marks) (2C - 1) on the whole film (a different detector / processing chain).

Files: JPEG (Pillow, quality 90, no optimisation pass: byte-stable) or DICOM written by pydicom with a proper file
meta header, MONOCHROME2 or MONOCHROME1 (inverted), BitsStored 12, Rescale slope / intercept and a VOI window.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from PIL import Image

FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
JPEG_QUALITY = 90
DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's registered root; the suffix is derived from ids, not time


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _add_blob(img, amp, cy, cx, s):
    """img += amp * gaussian(center (cy, cx), sd s), in grid units [-1, 1], evaluated only within 3 sd."""
    n = img.shape[0]
    to_px = lambda v: (v + 1) * (n - 1) / 2  # noqa: E731
    y0, y1 = max(0, int(to_px(cy - 3 * s))), min(n, int(to_px(cy + 3 * s)) + 1)
    x0, x1 = max(0, int(to_px(cx - 3 * s))), min(n, int(to_px(cx + 3 * s)) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    ax = np.linspace(-1, 1, n, dtype=np.float32)
    gy = np.exp(-((ax[y0:y1] - cy) ** 2) / (2 * s * s))
    gx = np.exp(-((ax[x0:x1] - cx) ** 2) / (2 * s * s))
    img[y0:y1, x0:x1] += amp * np.outer(gy, gx)


@functools.lru_cache(maxsize=16)
def _anatomy(size: int, lateral: bool, big_heart: bool):
    """The finding-free film of one view (cached: it depends only on size, view and heart size)."""
    ax = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    img = np.full((size, size), 0.06, np.float32)
    img[_ellipse(yy, xx, 0.05, 0.0, 0.95, 0.85)] = 0.55
    if lateral:
        lungs = _ellipse(yy, xx, -0.05, -0.05, 0.7, 0.55)
        img[lungs] = 0.22
        img[np.abs(xx - 0.6) < 0.09] = 0.75  # spine
        heart = _ellipse(yy, xx, 0.3, -0.25, 0.3, 0.25 * (1.3 if big_heart else 1.0))
        img[heart & lungs] = 0.6
        field = ((-0.05, -0.05),)
    else:
        left, right = _ellipse(yy, xx, -0.05, -0.4, 0.62, 0.3), _ellipse(yy, xx, -0.05, 0.4, 0.62, 0.3)
        img[left | right] = 0.2
        img[np.abs(xx) < 0.09] = 0.72  # mediastinum + spine
        ribs = (np.sin(yy * 22 + 3 * xx**2) > 0.85) & (left | right)
        img[ribs] += 0.06
        img[_ellipse(yy, xx, 0.3, 0.12, 0.22, 0.24 * (1.4 if big_heart else 1.0))] = 0.66
        field = ((-0.05, -0.4), (-0.05, 0.4))
    dome = yy > 0.66 - 0.1 * np.cos(xx * 2.5)  # diaphragm and abdomen
    img[dome] = np.maximum(img[dome], 0.62)
    for a in (img, yy, xx):
        a.setflags(write=False)
    return img, yy, xx, field


def render(
    rng: np.random.Generator, findings: dict[str, float], *, c: int, c_marks: float, size: int, lateral: bool
) -> np.ndarray:
    """One film as uint16 in 0..4095 (brighter = more attenuation, the MONOCHROME2 convention)."""
    pos = lambda v: findings.get(v) in (1.0, -1.0)  # noqa: E731  (uncertain findings are faint but visible)
    base, yy, xx, field = _anatomy(size, lateral, pos("Cardiomegaly"))
    img = base.copy()

    if pos("Consolidation") or pos("Pneumonia"):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = field[int(rng.integers(len(field)))]
            _add_blob(img, 0.3, cy + rng.uniform(0.0, 0.4), cx + rng.uniform(-0.1, 0.1), rng.uniform(0.07, 0.14))
    if pos("Edema"):
        for cy, cx in field:
            _add_blob(img, 0.16, cy, cx * 0.5, 0.3)
    if pos("Pleural Effusion"):
        cy, cx = field[int(rng.integers(len(field)))]
        meniscus = (yy > 0.3 + 0.15 * np.abs(xx - cx)) & (np.abs(xx - cx) < 0.32)
        img[meniscus] = np.maximum(img[meniscus], 0.5)
    if pos("Atelectasis"):
        for _cy, cx in field:
            img[(np.abs(yy - 0.38) < 0.025) & (np.abs(xx - cx) < 0.2)] += 0.18
    if pos("Pneumothorax"):
        cy, cx = field[0]
        img[_ellipse(yy, xx, -0.45, cx, 0.15, 0.25)] = 0.08
    if pos("Support Devices") and not lateral:
        img[(np.abs(xx - 0.0) < 0.012) & (yy < -0.25)] = 0.97  # endotracheal tube
        t = np.linspace(0, 1, 4 * size)
        ly = (-0.9 + 0.6 * t) * (size - 1) / 2 + (size - 1) / 2
        lx = (-0.5 + 0.45 * t**0.5) * (size - 1) / 2 + (size - 1) / 2
        img[ly.astype(int), lx.astype(int)] = 0.97  # central line

    # C's marks: the corner marker and the film's gamma.
    own = rng.random() < 0.5 + 0.5 * math.tanh(2 * c_marks)
    site = c if own else 1 - c
    m = max(2, size // 32)
    if site == 1:  # medical campus: an "L"-shaped lead block, top-left
        img[m : 4 * m, m : 2 * m] = 0.98
        img[3 * m : 4 * m, m : 3 * m] = 0.98
    else:  # surgical campus: a round marker, top-right
        r = np.arange(-2 * m, 2 * m + 1)
        disc = (r[:, None] ** 2 + r[None, :] ** 2) <= (1.2 * m) ** 2
        patch = img[m : m + 4 * m + 1, size - 5 * m - 1 : size - m]
        patch[disc[: patch.shape[0], : patch.shape[1]]] = 0.98
    img += 0.02 * rng.standard_normal(img.shape, dtype=np.float32)
    np.clip(img, 0, 1, out=img)
    return _gamma_lut(round(1.0 + 0.15 * math.tanh(c_marks) * (2 * c - 1), 6))[np.rint(img * 4095).astype(np.int32)]


@functools.lru_cache(maxsize=8)
def _gamma_lut(gamma: float) -> np.ndarray:
    """12-bit value -> 12-bit value after the film's gamma (a lookup is ~10x faster than a float power)."""
    return np.round((np.arange(4096) / 4095.0) ** gamma * 4095).astype(np.uint16)


def write_jpeg(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((pixels >> 4).astype(np.uint8), mode="L").save(path, format="JPEG", quality=JPEG_QUALITY)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    dicom_id: str,
    subject_id: int,
    study_id: int,
    view: str,
    study_date: str,
    study_time: str,
    variant: int,
) -> None:
    """A DX DICOM file: 12 bits stored in 16, MONOCHROME2/1, a rescale and a VOI window; UIDs derived from ids.

    ``variant`` (0..3) picks photometric interpretation and rescale so readers must honour both:
    0/1 MONOCHROME2 with slope 1 / slope 2; 2/3 MONOCHROME1 (inverted) with intercept 0 / -100.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    digits = lambda s: str(int(s.replace("-", ""), 16))[:30]  # noqa: E731  (UIDs stay under 64 chars)
    sop_uid = UID_ROOT + "1." + digits(dicom_id)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = f"{UID_ROOT}2.{study_id}"
    ds.SeriesInstanceUID = f"{UID_ROOT}3.{study_id}.1"
    ds.Modality = "DX"
    ds.PatientID = str(subject_id)
    ds.StudyID = str(study_id)
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.ViewPosition = view
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    slope, intercept = ((1, 0), (2, 0), (1, 0), (1, -100))[variant]
    # stored = (value - intercept) / slope, so that a reader applying the modality LUT gets value back
    stored = np.clip((pixels.astype(np.int32) - intercept) // slope, 0, 4095).astype(np.uint16)
    if variant >= 2:
        ds.PhotometricInterpretation = "MONOCHROME1"
        stored = (4095 - stored).astype(np.uint16)
    else:
        ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = str(slope), str(intercept), "US"
    lo, hi = intercept, 4095 * slope + intercept
    ds.WindowCenter, ds.WindowWidth = str((lo + hi) // 2), str(hi - lo)
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
