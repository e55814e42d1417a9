"""Outputs are written all or nothing, and a full disk is one user error, not a traceback."""

import errno
import re

import pytest

from cnnlab.errors import CnnlabError, DiskFull
from cnnlab.files import check_output, output_errors, staged


def test_staged_files_appear_together_when_the_block_completes(tmp_path):
    (tmp_path / "a.csv").write_text("old\n")
    with staged(tmp_path) as stage:
        stage(tmp_path / "a.csv").write_text("new\n")
        stage(tmp_path / "cams" / "x.png").write_bytes(b"png")
        assert (tmp_path / "a.csv").read_text() == "old\n"  # nothing replaced yet
    assert (tmp_path / "a.csv").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.csv", "cams", "x.png"]


def test_a_failure_midway_removes_staged_files_and_the_folders_made_for_them(tmp_path):
    (tmp_path / "a.csv").write_text("old\n")
    with pytest.raises(RuntimeError), staged(tmp_path) as stage:
        stage(tmp_path / "a.csv").write_text("new\n")
        stage(tmp_path / "new" / "cams" / "x.png").write_bytes(b"png")
        raise RuntimeError("the next overlay failed")
    assert [p.name for p in tmp_path.rglob("*")] == ["a.csv"]
    assert (tmp_path / "a.csv").read_text() == "old\n"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS])
def test_a_full_disk_becomes_one_user_error_naming_the_output(tmp_path, code):
    expected = re.escape(f"cannot write {tmp_path / 'run'}: disk full; nothing was written")
    kind = CnnlabError if code == errno.EROFS else DiskFull  # read-only is not a full disk
    with pytest.raises(kind, match=expected) as info, output_errors(tmp_path / "run"):
        raise OSError(code, "disk full")
    assert type(info.value) is kind


def test_a_full_disk_wrapped_by_a_library_is_still_a_full_disk(tmp_path):
    """The one definition of a full disk (``files.disk_full``) follows the exception chain."""
    with pytest.raises(DiskFull, match="No space left"), output_errors(tmp_path / "run"):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise OSError("the writer failed") from e


def test_a_forbidden_folder_is_one_user_error_but_not_a_full_disk(tmp_path):
    with pytest.raises(CnnlabError, match="Permission denied") as info, output_errors(tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")
    assert type(info.value) is CnnlabError


def test_other_os_errors_keep_their_traceback(tmp_path):
    with pytest.raises(IsADirectoryError), output_errors(tmp_path):
        raise IsADirectoryError(errno.EISDIR, "a bug, not the user's folder")


def test_targets_of_the_wrong_kind_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CnnlabError, match="--out .* is a directory"):
        check_output("--out", tmp_path)
    with pytest.raises(CnnlabError, match="--cam .* is a file"):
        check_output("--cam", tmp_path / "file", directory=True)
    with pytest.raises(CnnlabError, match="file is a file, not a directory"):
        check_output("--out", tmp_path / "file" / "deeper" / "p.csv")
    cams = check_output("--cam", tmp_path / "new" / "cams", directory=True)
    assert cams == tmp_path / "new" / "cams"
