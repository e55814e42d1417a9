"""``cnnlab predict`` (Fashion-MNIST) reads DICOM files through the same decoder as the
transfer pipeline (cnnlab.data.dicom): the file's window, then its usual 28 x 28 grey."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from dicom_files import ramp, write_dicom


def test_a_dcm_is_read_through_its_window_and_an_empty_one_is_one_reason(tmp_path):
    from cnnlab.fmnist.inference import load_image

    # a square ramp, windowed: black on the left third, white on the right third
    path = write_dicom(tmp_path / "x.dcm", ramp(99, 99), WindowCenter=495, WindowWidth=331)
    image = load_image(path, invert="no")
    assert image.shape == (28, 28)
    assert image[:, :8].max() == 0 and image[:, -8:].min() == 255
    assert np.all(np.diff(image[14]) >= 0)  # grey rises left to right, as the window says
    empty = write_dicom(tmp_path / "report.dcm", ramp(40, 40), pixel_data=False)
    with pytest.raises(CnnlabError, match=r"report\.dcm: DICOM file without pixel data$"):
        load_image(empty)
