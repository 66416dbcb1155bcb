"""Decoding chest X-ray files (JPG / PNG with PIL, DICOM with pydicom) into 8-bit RGB PIL images.

DICOM display pipeline (PS3.3 C.11, applied in the order the standard gives):

1. pixel data decoded by pydicom (uncompressed, JPEG baseline, JPEG 2000 via Pillow/OpenJPEG or pylibjpeg); the
   first frame of a multi-frame object;
2. modality LUT / RescaleSlope + RescaleIntercept (``pydicom.pixels.apply_modality_lut``), done in float, so 12-
   to 16-bit data keep their full depth until step 4;
3. VOI: a VOI LUT Sequence if present, else the first WindowCenter/WindowWidth (LINEAR / LINEAR_EXACT / SIGMOID)
   via ``pydicom.pixels.apply_voi_lut``; the output is scaled to [0, 1] by the *range of the VOI function*
   (LUT bit depth, or the window's y_min..y_max probed through the same function), not by the image's own
   min/max, so a lossy JPEG 2000 copy and the original land on the same scale. Without any VOI the image's
   min..max is used, except for display-ready 8-bit data, which keep their stored scale;
4. MONOCHROME1 (white = low values) is inverted so that bone is bright, as in MONOCHROME2 and JPG exports;
5. quantised to 8 bits and replicated to RGB - the form MIMIC-CXR-JPG and ImageNet-pretrained encoders expect,
   so DICOM and JPG inputs share one timm transform.

Every failure raises :class:`ImageDecodeError` with a short reason; the featurizer records it and moves on.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

DECODE_VERSION = "cxr-decode-v1"  # part of the image encoder fingerprint: bump when this pipeline changes
DICOM_SUFFIXES = {".dcm", ".dicom"}


class ImageDecodeError(Exception):
    """A per-image failure; ``reason`` is a short category recorded in the modality manifest."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def is_dicom(path: str | Path, data: bytes) -> bool:
    # The DICM magic at offset 128 is the Part 10 signature; the suffix catches files written without a preamble.
    return data[128:132] == b"DICM" or Path(path).suffix.lower() in DICOM_SUFFIXES


def decode_image(path: str | Path, data: bytes) -> Image.Image:
    """Decode ``data`` (the bytes of the file at ``path``) to an 8-bit RGB image."""
    if is_dicom(path, data):
        return Image.fromarray(dicom_to_uint8(data)).convert("RGB")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _pil_to_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageDecodeError(f"unreadable image ({type(err).__name__})") from None


def _pil_to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit PNGs: rescale, do not clip at 255
        arr = np.asarray(im, dtype=np.float64)
        return Image.fromarray(_to_uint8(_minmax(arr))).convert("RGB")
    return im.convert("RGB")


def _minmax(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(arr)), float(np.max(arr))
    return np.zeros_like(arr, dtype=np.float64) if hi <= lo else (arr - lo) / (hi - lo)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


def dicom_to_uint8(data: bytes) -> np.ndarray:
    """DICOM bytes -> uint8 (H, W) grey or (H, W, 3) colour array, following the module docstring's steps."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as err:
        raise ImageDecodeError(f"unreadable DICOM ({type(err).__name__})") from None
    if "PixelData" not in ds:
        raise ImageDecodeError("DICOM without pixel data")
    try:
        arr = ds.pixel_array
    except Exception as err:  # missing decoder plugin, truncated fragments, bad header values
        raise ImageDecodeError(f"undecodable DICOM pixel data ({type(err).__name__})") from None
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("SamplesPerPixel", 1)) == 3 or arr.ndim == 3:
        # pydicom converts YBR to RGB on decode; colour CXRs are rare screenshots - scale and keep the colours.
        return arr.astype(np.uint8) if arr.dtype == np.uint8 else _to_uint8(_minmax(arr.astype(np.float64)))
    try:
        values = apply_modality_lut(arr, ds).astype(np.float64)
        unit = _apply_voi_unit(values, ds)
    except Exception as err:
        raise ImageDecodeError(f"invalid DICOM LUT/window attributes ({type(err).__name__})") from None
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return _to_uint8(unit)


def _apply_voi_unit(values: np.ndarray, ds) -> np.ndarray:
    """VOI transform of modality values, scaled to [0, 1] by the output range of the VOI function itself."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        out = apply_voi_lut(values, ds, prefer_lut=True).astype(np.float64)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return np.clip(out / (2**bits - 1), 0.0, 1.0)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        out = apply_voi_lut(values, ds, prefer_lut=False).astype(np.float64)
        center, width = _first(ds.WindowCenter), abs(_first(ds.WindowWidth))
        # y_min / y_max depend on BitsStored, signedness and rescale (pydicom's rules); probing far below and
        # above the window through the same function reads them off without re-implementing those rules.
        probe = np.array([center - 100 * width - 1.0, center + 100 * width + 1.0])
        y_min, y_max = apply_voi_lut(probe, ds, prefer_lut=False).astype(np.float64)
        if y_max <= y_min:
            return _minmax(out)
        return np.clip((out - y_min) / (y_max - y_min), 0.0, 1.0)
    bits = int(ds.get("BitsStored", 16) or 16)
    if bits <= 8 and "RescaleSlope" not in ds:
        # 8-bit data without a window are display-ready (e.g. secondary captures of a JPG): keep their scale so
        # the DICOM and its JPG export give the same pixels instead of a min-max stretch.
        lo = -(2 ** (bits - 1)) if int(ds.get("PixelRepresentation", 0)) else 0
        return np.clip((values - lo) / (2**bits - 1), 0.0, 1.0)
    return _minmax(values)


def _first(value) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)
