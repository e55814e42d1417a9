"""Study and factor names, and the commands cnnlab prints for the user to paste.

A study name becomes a folder (``reports/NAME`` when ``study report`` has no ``--out``) and a
word in printed commands; a factor name becomes part of plot file names. A name such as
``../x`` or ``/tmp/x`` wrote the report outside ``reports/``, and ``a;rm -rf ~`` ran as a
command when the printed ``next:`` line was pasted, so names keep to a portable file-name
alphabet, and every printed command is shell-quoted as well.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from cnnlab.errors import CnnlabError

MAX_NAME_LENGTH = 64
# ASCII only (re.ASCII): \w would let in look-alike letters from other scripts
_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME_LENGTH - 1}}}", re.ASCII)
NAME_RULE = (
    f"use 1 to {MAX_NAME_LENGTH} ASCII letters, digits, '-', '_' or '.', "
    "not starting with '-' or '.'"
)


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def show(value: object, limit: int = 60) -> str:
    """``repr`` for one-line error messages: cut short, and safe for any value (``repr`` of
    an int of more than 4300 digits raises ValueError)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_study_name(name: object, where: str = "--name") -> str:
    """``name`` if it is safe as a folder name and a shell word; else a one-line error."""
    if not is_safe_name(name):
        raise CnnlabError(f"invalid {where} {show(name)}: {NAME_RULE}")
    return name  # type: ignore[return-value]


def slug(text: str, fallback: str = "study") -> str:
    """A safe name made from ``text`` (a spec file's stem): unsafe runs become '-'."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", text, flags=re.ASCII).lstrip(".-")
    out = out[:MAX_NAME_LENGTH].rstrip("-")
    return out if is_safe_name(out) else fallback


def default_report_dir(name: str) -> Path:
    """``reports/NAME``: the folder ``study report`` writes to without ``--out``."""
    return Path("reports") / check_study_name(name, "study name")


def shell_command(*words: object) -> str:
    """A command line to print for pasting: each word quoted for a POSIX shell."""
    return " ".join(shlex.quote(str(w)) for w in words)
