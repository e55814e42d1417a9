"""DICOM files made in the tests with pydicom, as a scanner would write them: DICOM Part 10
(preamble, ``DICM``, file meta), Explicit VR Little Endian, one sample per pixel unless told.

``dicom_bytes(pixels, **tags)`` sets Rows, Columns, the bit depth and the pixel representation
from ``pixels`` (uint8, uint16 or int16; a 3-D array is a multi-frame file, or with
``photometric="RGB"`` one colour image); ``tags`` are set
as DICOM keywords (``WindowCenter=40``), ``pixel_data=False`` leaves the pixels out, and
``syntax`` names the transfer syntax (a compressed one gets the raw bytes encapsulated,
not really compressed: enough for a reader that refuses the syntax before decoding).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def dicom_bytes(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    pixel_data: bool = True,
    syntax: str = ExplicitVRLittleEndian,
    **tags,
) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset("test.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    colour = photometric == "RGB"  # then pixels are H x W x 3, interleaved
    if pixels.ndim == 3 + colour:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2 - colour : pixels.ndim - colour]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    if pixel_data:
        raw = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        # a compressed syntax stores its frames encapsulated; the bytes are not decoded here
        ds.PixelData = encapsulate([raw]) if UID(syntax).is_compressed else raw
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_bytes(pixels, **kwargs))
    return path


def ramp(width: int = 100, height: int = 20, step: int = 10, dtype=np.uint16) -> np.ndarray:
    """Each row 0, step, 2 * step, ...: the value at column x is ``x * step``."""
    return np.tile(np.arange(width, dtype=np.int64) * step, (height, 1)).astype(dtype)
