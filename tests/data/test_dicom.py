"""DICOM files as 8-bit images (cnnlab.data.dicom, through image_files.open_header as every
consumer reads them): the file's own Modality LUT and VOI window, 16-bit and signed pixels,
MONOCHROME1, frame 0, the size limits before any pixel is decoded, and one reason for each
file that cannot be used."""

from __future__ import annotations

import sys

import numpy as np
import pydicom.pixels
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless

from cnnlab.data import dicom
from cnnlab.data import image_files as F
from cnnlab.errors import CnnlabError
from dicom_files import dicom_bytes, ramp


def pixels(data: bytes, max_pixels: int = F.MAX_PIXELS) -> np.ndarray:
    with F.open_header(data, max_pixels) as im:
        return np.asarray(im)


# --- the display pipeline ----------------------------------------------------------------


def test_the_files_window_maps_its_range_to_black_through_white():
    # ramp: column x holds 10 x; window centre 500, width 201 (LINEAR, DICOM PS3.3
    # C.11.2.1.2): 399.5 and below black, above 599.5 white, linear between
    out = pixels(dicom_bytes(ramp(), WindowCenter=500, WindowWidth=201))
    assert out.dtype == np.uint8 and out.shape == (20, 100)
    assert [out[0, x] for x in (0, 39, 40, 50, 55, 60, 99)] == [0, 0, 1, 128, 192, 255, 255]
    assert (out == out[0]).all()  # every row alike, as in the file


def test_without_a_window_the_images_own_range_is_stretched():
    out = pixels(dicom_bytes(ramp()))  # 0 .. 990
    assert [out[0, x] for x in (0, 50, 99)] == [0, 129, 255]  # 500 / 990 * 255 = 128.8


def test_the_first_of_several_windows_is_the_one_used():
    one = pixels(dicom_bytes(ramp(), WindowCenter=500, WindowWidth=201))
    several = pixels(dicom_bytes(ramp(), WindowCenter=[500, 100], WindowWidth=[201, 50]))
    assert (several == one).all()


def test_a_window_that_is_not_a_number_falls_back_to_the_images_range():
    data = dicom_bytes(ramp(), WindowCenter=500, WindowWidth=201)
    broken = data.replace(b"500.0 ", b"5x0.0 ")  # the Window Center, as its bytes
    assert broken != data
    assert (pixels(broken) == pixels(dicom_bytes(ramp()))).all()


def test_a_sigmoid_window_is_centred_on_its_centre():
    out = pixels(dicom_bytes(ramp(), WindowCenter=500, WindowWidth=40, VOILUTFunction="SIGMOID"))
    # 1 / (1 + exp(-4 (x - c) / w)): 0.5 at the centre, 0.018 and 0.982 at c -+ w
    assert [out[0, x] for x in (46, 50, 54)] == [5, 128, 250]


def test_rescale_slope_and_intercept_come_before_the_window_on_signed_pixels():
    # stored -500 .. 490 (int16); modality value 2 x stored - 100; window 0 +- 200 in
    # modality units, as a CT window is given in Hounsfield units
    stored = ramp(dtype=np.int16) - 500
    out = pixels(
        dicom_bytes(stored, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=0, WindowWidth=400)
    )
    # stored -50 -> -200 (black), 0 -> -100, 50 -> 0 (mid-grey), 100 -> 100, 150 -> 200 (white)
    assert [out[0, x] for x in (45, 50, 55, 60, 65)] == [0, 64, 128, 192, 255]


def voi_lut(descriptor: list[int], vr: str, data) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = descriptor  # entries, first value mapped, bits per entry
    item.add_new("LUTData", vr, data)
    return item


def test_without_a_window_the_files_voi_lut_maps_the_values():
    # an 8-bit LUT of 1000 entries: a threshold at 500 (pydicom 3.0.2's apply_voi_lut wraps
    # inputs above 255 with an 8-bit LUT and gave black everywhere)
    threshold = voi_lut([1000, 0, 8], "US", [0] * 500 + [255] * 500)
    out = pixels(dicom_bytes(ramp(), VOILUTSequence=[threshold]))
    assert [out[0, x] for x in (0, 49, 50, 99)] == [0, 0, 255, 255]
    # 16-bit words (OW) from the value 300 on: below it the first entry, then a ramp
    steps = voi_lut([500, 300, 16], "OW", (np.arange(500, dtype="<u2") * 8).tobytes())
    out = pixels(dicom_bytes(ramp(), VOILUTSequence=[steps]))
    assert [out[0, x] for x in (0, 30, 40, 55, 80, 99)] == [0, 0, 51, 128, 255, 255]


def test_sixteen_bit_pixels_use_their_whole_range_not_clipped_at_255():
    stored = np.zeros((8, 8), np.uint16)
    stored[0, :3] = [1000, 32768, 65535]
    out = pixels(dicom_bytes(stored))
    assert list(out[0, :3]) == [4, 128, 255]
    assert out[1, 0] == 0


def test_monochrome1_is_inverted_so_that_dense_tissue_is_white():
    window = {"WindowCenter": 500, "WindowWidth": 201}
    normal = pixels(dicom_bytes(ramp(), **window))
    inverted = pixels(dicom_bytes(ramp(), photometric="MONOCHROME1", **window))
    assert (inverted.astype(int) == 255 - normal).all()
    assert inverted[0, 0] == 255 and inverted[0, 99] == 0


def test_of_a_multi_frame_file_frame_0_is_used():
    frames = np.stack([ramp(), ramp()[:, ::-1], np.zeros_like(ramp())])
    out = pixels(dicom_bytes(frames))
    assert (out == pixels(dicom_bytes(ramp()))).all()


def test_a_colour_file_keeps_its_colours():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0], rgb[4:, :, 2] = 200, 90
    with F.open_header(dicom_bytes(rgb, photometric="RGB")) as im:
        assert im.mode == "RGB" and (np.asarray(im) == rgb).all()


def test_every_consumer_gets_rgb_like_from_any_other_grey_image():
    from PIL import Image

    with F.open_header(dicom_bytes(ramp())) as im:
        assert im.mode == "L" and im.size == (100, 20)
        assert np.asarray(im.convert("RGB"))[0, 99].tolist() == [255, 255, 255]
    assert isinstance(F.open_header(dicom_bytes(ramp())), Image.Image)


# --- limits, before any pixel is decoded -------------------------------------------------


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", refuse)


@pytest.mark.parametrize(
    ("rows", "columns", "why"),
    [(12000, 12000, "above the limit of 89,478,485"), (1, 20000, "aspect ratio")],
)
def test_a_header_beyond_the_limits_is_refused_before_its_pixels_are_read(
    no_pixel_decoding, rows, columns, why
):
    data = dicom_bytes(ramp(8, 8), Rows=rows, Columns=columns)  # a few bytes of pixels
    with pytest.raises(F.ImageTooLarge, match=why):
        F.open_header(data)


def test_the_callers_pixel_limit_applies_to_dicom_too(no_pixel_decoding):
    with pytest.raises(F.ImageTooLarge, match="64x64 = 4,096 pixels, above the limit of 1,000"):
        F.open_header(dicom_bytes(ramp(64, 64)), max_pixels=1000)


# --- files that cannot be used: one reason each ------------------------------------------


def refusal(data: bytes) -> str:
    with pytest.raises(F.ImageRefused) as caught:
        F.open_header(data)
    assert not isinstance(caught.value, F.ImageTooLarge)
    reason = str(caught.value)
    assert "\n" not in reason and len(reason) < 300
    return reason


def test_a_file_without_pixel_data_is_named_so():
    assert refusal(dicom_bytes(ramp(), pixel_data=False)) == "DICOM file without pixel data"


def test_a_file_without_an_image_header_is_named_so():
    data = dicom_bytes(ramp(), pixel_data=False)
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO

    ds = dcmread(DicomBytesIO(data))
    del ds.Rows, ds.Columns
    buf = DicomBytesIO()
    ds.save_as(buf)
    assert refusal(buf.getvalue()).startswith("DICOM file without an image")


def test_a_truncated_file_is_corrupt_not_a_traceback():
    data = dicom_bytes(ramp())
    assert refusal(data[: len(data) - 1000]).startswith("corrupt DICOM")


def test_garbage_after_the_dicm_prefix_is_corrupt():
    assert refusal(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4).startswith("corrupt DICOM")


def test_a_compression_no_installed_decoder_reads_is_named():
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder (pylibjpeg or gdcm) is installed here")
    data = dicom_bytes(ramp(), syntax=JPEGLSLossless)
    reason = refusal(data)
    assert "JPEG-LS Lossless" in reason and "cannot decode here" in reason


def test_a_dicom_named_file_without_the_dicm_prefix_is_not_taken_for_one():
    assert not dicom.is_dicom(dicom_bytes(ramp())[132:])
    assert dicom.is_dicom(dicom_bytes(ramp()))


def test_without_pydicom_the_error_names_the_extra_instead_of_skipping_the_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom: ModuleNotFoundError
    with pytest.raises(CnnlabError) as caught:
        F.open_header(dicom_bytes(ramp()))
    assert not isinstance(caught.value, F.ImageRefused)  # a command stops: every file fails
    assert str(caught.value) == "reading DICOM files needs pydicom: pip install 'cnnlab[dicom]'"
