"""Image featurizer: DICOM/PIL decoding on real and hand-built files; a tiny random timm model on a contract cohort.

Image rows of the fixture cohort and the edge case each exists for:
  a  two images (PNG + 8-bit DICOM) at different study times -> mean / latest pooling
  b  one real CXR JPG
  c  a corrupt JPG (random bytes) only -> skipped, mask false, reason recorded, the run goes on
  d  a truncated DICOM and a missing file
  e  has_cxr false although an image row exists -> never read
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medmodal.common import MedmodalError
from medmodal.contracts import write_cohort
from medmodal.featurize import featurize_image, load_cohort_features, tiny
from medmodal.featurize.decode import ImageDecodeError, decode_image, dicom_to_uint8
from medmodal.featurize.image import ImageConfig, ImageEncoder, build_timm_model

MODEL = "test_convnext"


def write_dicom(
    path: Path, pixels: np.ndarray, *, photometric="MONOCHROME2", bits=12, window=None, rescale=None, signed=False
) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(ds.BitsAllocated, signed)]
    ds.PixelData = pixels.astype(dtype).tobytes()
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(h=64, w=48, hi=4095) -> np.ndarray:
    return np.tile(np.linspace(0, hi, w).round(), (h, 1))


# ------------------------------------------------------------------------------------------------- decoding
def test_monochrome1_is_inverted_and_window_applied(tmp_path):
    px = ramp()
    m2 = dicom_to_uint8(write_dicom(tmp_path / "m2.dcm", px, window=(2048, 4096)).read_bytes())
    m1 = dicom_to_uint8(
        write_dicom(tmp_path / "m1.dcm", px, photometric="MONOCHROME1", window=(2048, 4096)).read_bytes()
    )
    assert m2.dtype == np.uint8 and m2.shape == px.shape
    assert m2[0, 0] == 0 and m2[0, -1] == 255 and np.all(np.diff(m2[0].astype(int)) >= 0)
    np.testing.assert_array_equal(m1.astype(int), 255 - m2.astype(int))
    # a narrow window clips: everything below 1000 is black, above 2000 white, linear in between
    narrow = dicom_to_uint8(write_dicom(tmp_path / "n.dcm", px, window=(1500, 1000)).read_bytes())
    assert np.all(narrow[0, px[0] < 990] == 0) and np.all(narrow[0, px[0] > 2010] == 255)
    mid = (px[0] > 1100) & (px[0] < 1900)
    assert np.all((narrow[0, mid] > 0) & (narrow[0, mid] < 255))


def test_rescale_slope_intercept_and_signed_data(tmp_path):
    raw = ramp(hi=2000)  # stored values 0..2000
    # CT-like: HU = raw - 1024, window on HU 0 +- 500 -> raw 524..1524 spans black to white
    out = dicom_to_uint8(write_dicom(tmp_path / "ct.dcm", raw, rescale=(1, -1024), window=(0, 1000)).read_bytes())
    assert np.all(out[0, raw[0] < 514] == 0) and np.all(out[0, raw[0] > 1534] == 255)
    signed = dicom_to_uint8(write_dicom(tmp_path / "s.dcm", raw - 1000, bits=16, signed=True).read_bytes())
    assert signed[0, 0] == 0 and signed[0, -1] == 255  # no window: the image's own range


def test_real_dicom_uncompressed_and_jpeg2000_agree(shared_data):
    d = shared_data / "cxr-samples" / "pydicom-data-nema-wg04"
    unc = dicom_to_uint8((d / "RG1_UNCR.dcm").read_bytes()).astype(float)
    j2k = dicom_to_uint8((d / "RG1_J2KI.dcm").read_bytes()).astype(float)
    assert unc.shape == j2k.shape == (1955, 1841)
    assert np.abs(unc - j2k).mean() < 1.0 and np.corrcoef(unc.ravel(), j2k.ravel())[0, 1] > 0.999
    # MONOCHROME1: stored values are high where the film is dark, so the display image anti-correlates with them
    stored = pydicom.dcmread(d / "RG1_UNCR.dcm").pixel_array.astype(float)
    assert np.corrcoef(stored[::8, ::8].ravel(), unc[::8, ::8].ravel())[0, 1] < -0.99


def test_real_dicom_and_its_jpg_give_identical_pixels(shared_data):
    d = shared_data / "cxr-samples" / "rsna-pneumonia-nih-derived"
    dcm = next(d.glob("*.dcm"))
    a = np.asarray(decode_image(dcm, dcm.read_bytes()))
    b = np.asarray(decode_image(dcm.with_suffix(".jpg"), dcm.with_suffix(".jpg").read_bytes()))
    assert a.shape == (1024, 1024, 3) and np.array_equal(a, b)


def test_corrupt_inputs_raise_a_short_reason(tmp_path):
    with pytest.raises(ImageDecodeError, match="unreadable image"):
        decode_image("x.jpg", b"\xff\xd8 not really a jpeg" * 10)
    good = write_dicom(tmp_path / "t.dcm", ramp()).read_bytes()
    with pytest.raises(ImageDecodeError, match="DICOM"):
        decode_image("t.dcm", good[: len(good) // 2])
    png16 = io.BytesIO()
    Image.fromarray(ramp(hi=60000).astype(np.uint16)).save(png16, format="PNG")
    im = np.asarray(decode_image("x.png", png16.getvalue()))
    assert im[0, 0, 0] == 0 and im[0, -1, 0] == 255  # 16-bit PNG rescaled, not clipped at 255


# ------------------------------------------------------------------------------------------------- featurizer
@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny.make_tiny_timm(tmp_path_factory.mktemp("timm") / f"{MODEL}.safetensors", name=MODEL, seed=0)


def _cohort(root: Path) -> Path:
    imgs = root / "imgs"
    imgs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((80, 70)) * 255).astype(np.uint8)).save(imgs / "a1.png")
    write_dicom(imgs / "a2.dcm", (rng.random((90, 60)) * 255).round(), bits=8)
    Image.fromarray((rng.random((70, 90, 3)) * 255).astype(np.uint8)).save(imgs / "b1.jpg")
    (imgs / "c1.jpg").write_bytes(rng.bytes(3000))
    good = write_dicom(imgs / "tmp.dcm", ramp()).read_bytes()
    (imgs / "d1.dcm").write_bytes(good[:700])
    (imgs / "tmp.dcm").unlink()
    images = pl.DataFrame(
        {
            "sample_id": ["a", "a", "b", "c", "d", "d", "e"],
            "dicom_id": ["a1", "a2", "b1", "c1", "d1", "d2", "e1"],
            "study_id": [1, 2, 3, 4, 5, 5, 6],
            "view": ["PA"] * 7,
            "study_time": [datetime(2150, 1, 1, h) for h in (1, 4, 1, 1, 1, 1, 1)],
            "path": [
                "imgs/a1.png",
                str(imgs / "a2.dcm"),
                str(imgs / "b1.jpg"),
                str(imgs / "c1.jpg"),
                str(imgs / "d1.dcm"),
                str(imgs / "missing.jpg"),
                str(imgs / "a1.png"),
            ],
        }
    )
    return write_cohort(
        root,
        sample_ids=list("abcde"),
        splits=["train"] * 3 + ["val", "test"],
        modalities={"cxr": "image"},
        has={"cxr": [1, 1, 1, 1, 0]},
        images=images,
    )


def test_featurize_images_skips_bad_files_and_pools_per_sample(tmp_path, weights):
    cohort = _cohort(tmp_path / "cohort")
    store = tmp_path / "store"
    res = featurize_image(cohort, store, model=MODEL, weights=weights, num_workers=2, batch_size=2)
    ids, feats = load_cohort_features(store, cohort)
    cxr = feats["cxr"]
    assert ids == list("abcde") and cxr["x"].shape == (5, 64)
    assert cxr["mask"].tolist() == [True, True, False, False, False]
    assert torch.all(cxr["x"][2:] == 0)
    man = cxr["manifest"]
    assert man["counts"] == {"items": 6, "computed": 3, "reused": 0, "skipped": 3, "observed": 2}
    reasons = {s["item_id"]: s["reason"] for s in man["skipped_items"]}
    assert (
        reasons["c1"].startswith("unreadable image") and "DICOM" in reasons["d1"] and reasons["d2"] == "file not found"
    )
    assert res["cxr"].skipped == 3

    enc = ImageEncoder(ImageConfig(model=MODEL, weights=str(weights), device="cpu"))
    imgs = tmp_path / "cohort" / "imgs"
    a1, a2, b1 = (
        enc.forward(enc.transform(decode_image(p, p.read_bytes()))[None])[0]
        for p in (imgs / "a1.png", imgs / "a2.dcm", imgs / "b1.jpg")
    )
    np.testing.assert_allclose(cxr["x"][0].numpy(), (a1 + a2) / 2, atol=1e-5)
    np.testing.assert_allclose(cxr["x"][1].numpy(), b1, atol=1e-5)

    # second run: all cached (the worker-free path gives the same vectors); latest = a2 (study at 04:00)
    again = featurize_image(
        cohort, store, model=MODEL, weights=weights, num_workers=0, pooling="latest", overwrite=True
    )
    assert (again["cxr"].computed, again["cxr"].reused) == (0, 3)
    _, feats2 = load_cohort_features(store, cohort)
    np.testing.assert_allclose(feats2["cxr"]["x"][0].numpy(), a2, atol=1e-5)

    # other weights -> another fingerprint: recomputed; a replaced file -> only that item recomputed
    other = tiny.make_tiny_timm(tmp_path / "other.safetensors", name=MODEL, seed=1)
    assert (
        featurize_image(cohort, store, model=MODEL, weights=other, num_workers=0, overwrite=True)["cxr"].computed == 3
    )
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(imgs / "b1.jpg")
    edited = featurize_image(cohort, store, model=MODEL, weights=weights, num_workers=0, overwrite=True)
    assert (edited["cxr"].computed, edited["cxr"].reused) == (1, 2)


def test_weights_with_a_head_load_and_wrong_weights_fail_clearly(tmp_path, weights):
    import timm
    from safetensors.torch import save_file

    full = timm.create_model(MODEL, pretrained=False, num_classes=1000)
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(tmp_path / "head.safetensors"))
    model = build_timm_model(MODEL, tmp_path / "head.safetensors")  # classifier dropped
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 64)
    torch.save(full.state_dict(), tmp_path / "head.pth")  # a plain state dict: read with weights_only=True
    assert build_timm_model(MODEL, tmp_path / "head.pth")(torch.zeros(1, 3, 64, 64)).shape == (1, 64)
    with pytest.raises(MedmodalError, match="do not fit timm model 'resnet10t'"):
        build_timm_model("resnet10t", weights)
    with pytest.raises(MedmodalError, match="hf download timm/"):
        ImageEncoder(ImageConfig(model="resnet10t", device="cpu"))
    with pytest.raises(MedmodalError, match="unknown timm model"):
        build_timm_model("no_such_net_xyz", weights)


def test_warm_runs_stat_files_instead_of_rereading_them(tmp_path, weights, monkeypatch):
    import medmodal.featurize.image as image_mod

    cohort = _cohort(tmp_path / "cohort")
    store = tmp_path / "store"
    featurize_image(cohort, store, model=MODEL, weights=weights, num_workers=0)
    read = []
    real = image_mod.read_and_hash
    monkeypatch.setattr(image_mod, "read_and_hash", lambda p: read.append(Path(p).name) or real(p))
    assert featurize_image(cohort, store, model=MODEL, weights=weights, num_workers=0)["cxr"].reused == 3
    assert read == []  # sizes and mtimes unchanged: no file was read
    Image.fromarray(np.full((60, 60), 7, np.uint8)).save(tmp_path / "cohort" / "imgs" / "b1.jpg")
    res = featurize_image(cohort, store, model=MODEL, weights=weights, num_workers=0)
    assert read == ["b1.jpg"] and (res["cxr"].computed, res["cxr"].reused) == (1, 2)
    read.clear()
    featurize_image(cohort, store, model=MODEL, weights=weights, num_workers=0, rehash=True)
    assert sorted(read) == ["a1.png", "a2.dcm", "b1.jpg", "c1.jpg", "d1.dcm"]
