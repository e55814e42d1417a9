"""DICOM files (the format X-ray, CT and MR images leave the scanner in) as 8-bit images.

Read with pydicom (the ``dicom`` extra), from bytes already read within the file-size cap,
never from the network and only as DICOM Part 10 (``force=False``: the 128-byte preamble and
``DICM``, what modalities and PACS exports write). ``cnnlab.data.image_files`` calls
:func:`read_header`, checks the image's Rows x Columns against the limits every image file
meets, and only then calls :func:`to_8bit`, so a header claiming a huge image costs nothing.

A stored pixel value is not a grey level: it goes through the file's own display pipeline
(DICOM PS3.3 C.11), as a viewer would show it:
1. the Modality LUT: RescaleSlope and RescaleIntercept (Hounsfield units for CT), or a
   Modality LUT Sequence;
2. the VOI window the file names: WindowCenter and WindowWidth (their first value when the
   file offers several, the one a viewer opens with), with its VOILUTFunction (LINEAR by
   default, LINEAR_EXACT, SIGMOID); else the first VOI LUT Sequence item; else the minimum
   and maximum of the image itself;
3. MONOCHROME1 (bright means low, common in computed radiography) is inverted so that bone is
   white as in every other image;
4. the result is rounded to 8-bit grey, which callers turn into RGB like any other image.
Colour files (RGB, YBR, PALETTE COLOR) are returned as 8-bit RGB. Of a multi-frame file only
frame 0 is used (a classifier of single images has no use for the others; decoding only it
keeps memory at one frame).

Every reason a file cannot be used is a :class:`DicomUnreadable` (a ValueError) naming it:
no pixel data, a compression pydicom cannot decode here, a corrupt file. A missing pydicom
is a CnnlabError naming the extra, not a skipped file: every DICOM file would fail alike.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.runtime import missing_extra_error

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

# pydicom warns (UserWarning) about what it finds malformed in a file it then reads or
# refuses (excess padding after the pixel data, say): the file's fate is said in cnnlab's
# words, as for Pillow's warnings (image_files.py); a filter, as files decode in threads.
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")

MAGIC_OFFSET = 128  # DICOM PS3.10 7.1: a 128-byte preamble, then "DICM"
MAGIC = b"DICM"
GREY = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR")


class DicomUnreadable(ValueError):
    """Why a DICOM file cannot be used as an image (without its path: callers add it).

    One printable line: the reason may quote the file's own bytes (a corrupt Transfer Syntax
    UID held a newline), and it is printed to a terminal and into CSV files.
    """

    def __init__(self, reason: str):
        super().__init__("".join(c if c.isprintable() else "?" for c in reason)[:300])


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` starts as a DICOM Part 10 file does (whatever the file is named)."""
    return data[MAGIC_OFFSET : MAGIC_OFFSET + len(MAGIC)] == MAGIC


def _pydicom():
    try:
        import pydicom
        import pydicom.pixels
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "pydicom":
            raise
        raise missing_extra_error("dicom", "pydicom") from None
    return pydicom


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Any exception pydicom raises on a malformed file as a DicomUnreadable naming it.

    Any, not a list: pydicom parses elements lazily, when first read, and a corrupt one
    raises what its converter meets (NotImplementedError for an unknown VR, TypeError,
    BytesLengthException); a fuzzer found each of these outside the parser's own call.
    """
    try:
        yield
    except (DicomUnreadable, CnnlabError):  # CnnlabError: pydicom is not installed
        raise
    except MemoryError:
        raise DicomUnreadable("needs more memory than is free to decode") from None
    except Exception as e:  # noqa: BLE001  (see the docstring)
        raise DicomUnreadable(f"corrupt DICOM {what} ({_first_line(e)})") from None


def _read(data: bytes, stop_before_pixels: bool) -> Dataset:
    pydicom = _pydicom()
    with _reading("file"):
        return pydicom.dcmread(io.BytesIO(data), force=False, stop_before_pixels=stop_before_pixels)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def read_header(data: bytes) -> tuple[Dataset, int, int]:
    """The file's header (without its pixel data) and its image's (width, height).

    Raises DicomUnreadable when the file holds no image, or one compressed in a way no
    decoder installed here reads: both known before a pixel is decoded.
    """
    with _reading("file"):
        return _header(_read(data, stop_before_pixels=True))


def _header(ds: Dataset) -> tuple[Dataset, int, int]:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None:
        raise DicomUnreadable("corrupt DICOM file (no Transfer Syntax UID in its file meta)")
    try:
        width, height = int(ds.Columns), int(ds.Rows)
    except (AttributeError, TypeError, ValueError):
        raise DicomUnreadable(
            "DICOM file without an image (no Rows/Columns: a report or structured document?)"
        ) from None
    _check_decoder(syntax)
    return ds, width, height


def _check_decoder(syntax: UID) -> None:
    from pydicom.pixels import get_decoder

    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise DicomUnreadable(
            f"DICOM pixel data compressed as {syntax.name}, which pydicom cannot decode here "
            "(it needs a decoder plugin such as pylibjpeg or gdcm)"
        )


def to_8bit(data: bytes) -> np.ndarray:
    """Frame 0 of the file's image: H x W uint8 grey, or H x W x 3 uint8 for colour files.

    Call it only after the size from :func:`read_header` passed the limits. Raises
    DicomUnreadable naming the reason.
    """
    ds = _read(data, stop_before_pixels=False)
    with _reading("pixel data"):
        return _pixels(ds)


def _pixels(ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DicomUnreadable("DICOM file without pixel data")
    kind = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if kind not in GREY + COLOUR:
        raise DicomUnreadable(f"DICOM photometric interpretation {kind or '(none)'} not supported")
    raw = pixel_array(ds, index=0)  # frame 0 only: see the module docstring
    if kind == "PALETTE COLOR":
        return _stretch(apply_color_lut(raw, ds))
    if kind not in GREY:
        return _stretch(raw)
    with np.errstate(all="ignore"):  # NaN or infinite float pixels: not a warning line
        unit = _voi(apply_modality_lut(raw, ds).astype(np.float32), ds)
    if kind == "MONOCHROME1":
        unit = 1.0 - unit
    return _to_uint8(unit)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255; what is not a number (float pixel data may hold NaN) is black."""
    unit = np.clip(np.nan_to_num(unit, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return np.rint(unit * 255).astype(np.uint8)


def _stretch(arr: np.ndarray) -> np.ndarray:
    """Colour pixels as uint8: 8-bit ones as they are, deeper ones min-max stretched."""
    if arr.dtype == np.uint8:
        return arr
    with np.errstate(all="ignore"):
        return _to_uint8(_min_max(arr.astype(np.float32)))


def _min_max(values: np.ndarray) -> np.ndarray:
    ok = np.isfinite(values)
    finite = values if ok.all() else values[ok]  # a copy only where float pixels hold NaN
    if finite.size == 0:
        return np.zeros_like(values)
    lo, hi = float(finite.min()), float(finite.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def _first(value) -> float:
    """A Window Center/Width as a number: the first of several, as viewers open with."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        value = value[0]  # pydicom's MultiValue is a Sequence
    return float(value)


def _voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality values -> display values in [0, 1] by the file's own VOI settings.

    The window is computed here rather than by pydicom's ``apply_windowing``, whose output
    range follows BitsStored and the rescale and would have to be undone to reach 8 bits; the
    formulas are those of DICOM PS3.3 C.11.2.1.2 and C.11.2.1.3. A window that cannot be used
    (width not positive, values that are not numbers) falls back to min-max, as a viewer
    shows a file whose window is broken.
    """
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        except (TypeError, ValueError, IndexError):
            center, width = 0.0, 0.0
        if not (np.isfinite(center) and np.isfinite(width)):
            center, width = 0.0, 0.0
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"
        if function == "SIGMOID" and width > 0:
            return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        if function == "LINEAR_EXACT" and width > 0:
            return np.clip((values - center) / width + 0.5, 0.0, 1.0)
        if function == "LINEAR" and width >= 1:
            # C.11.2.1.2.1: the window of width w spans w - 1 values around c - 0.5
            unit = (values - (center - 0.5)) / max(width - 1, 1e-6) + 0.5
            return np.clip(unit, 0.0, 1.0)
    elif "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        return _voi_lut(values, ds)
    return _min_max(values)


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """The first VOI LUT of the file (PS3.3 C.11.2.1.1), its entries' range black to white.

    Looked up here: pydicom 3.0.2's ``apply_voi_lut`` indexes an 8-bit LUT with 8-bit indices,
    so every input above 255 wraps around. Scaled by the range of the entries, not by the
    descriptor's bit depth: files declaring 16 bits often hold 12-bit entries, which would
    show as a dim grey.
    """
    item = ds.VOILUTSequence[0]
    entries, first = int(item.LUTDescriptor[0]) or 2**16, int(item.LUTDescriptor[1])
    data = item.LUTData
    if isinstance(data, bytes):  # OW: 16-bit words in the file's byte order
        order = ">" if ds.original_encoding[1] is False else "<"
        lut = np.frombuffer(data, f"{order}u2", count=min(entries, len(data) // 2))
    else:
        lut = np.asarray(data if isinstance(data, Sequence) else [data], np.float64)
    if lut.size == 0:
        return _min_max(values)
    index = np.clip(np.rint(values) - first, 0, lut.size - 1).astype(np.int64)
    return _min_max(lut.astype(np.float32))[index]
