"""Reading a spec file (YAML or TOML) into plain data, within limits a spec never needs.

A 345-byte YAML file of nested aliases (``&b [*a, *a, ...]`` nine levels deep) stands for
9**9 strings: PyYAML builds it as shared lists in no time, but the first ``str`` or
``json.dumps`` of it grew past 2.5 GB and died with a MemoryError. Merge keys
(``<<: [*a, *a]``) copy instead of sharing, so they blow up during construction itself. The
loader therefore counts, while composing and before anything is constructed, how many nodes
the document stands for once every alias is expanded, and refuses absurd counts, nesting or
alias use in one line. Real specs are a page long: the built-in ``standard`` profile is about
1 KB, 150 nodes, 5 levels deep, and uses no alias.

PyYAML follows YAML 1.1, where ``1e-3`` and ``1e26`` are strings (only ``1.0e-3`` is a float):
``lr: 1e-3`` then failed with "'>' not supported between 'str' and 'int'". The loader reads
them as numbers, as YAML 1.2 and TOML do.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, SequenceNode

from cnnlab.errors import CnnlabError

MAX_SPEC_BYTES = 256 * 1024
MAX_NODES = 20_000  # after alias expansion
MAX_DEPTH = 32
MAX_ALIASES = 1_000


class SpecTooLarge(yaml.YAMLError):
    pass


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that measures the expanded document while composing it."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        # id(node) -> (nodes it stands for once aliases are expanded, its nesting height)
        self._measured: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise SpecTooLarge(f"more than {MAX_ALIASES} aliases")
            node = super().compose_node(parent, index)
            if id(node) not in self._measured:  # its anchor is still open: it contains itself
                raise SpecTooLarge("an alias refers to a node that contains it")
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise SpecTooLarge(f"nested more than {MAX_DEPTH} levels deep")
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._measure(node)
        return node

    def _measure(self, node: Any) -> None:
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        sizes = [self._measured[id(c)] for c in children]
        size = 1 + sum(s for s, _ in sizes)
        height = 1 + max((h for _, h in sizes), default=0)
        if size > MAX_NODES:
            raise SpecTooLarge(f"it expands to more than {MAX_NODES} values (aliases included)")
        if height > MAX_DEPTH:
            raise SpecTooLarge(f"nested more than {MAX_DEPTH} levels deep (aliases included)")
        self._measured[id(node)] = (size, height)


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_spec_file(path: Path) -> tuple[str, str]:
    """The text of a spec file and its format (``yaml`` or ``toml``)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise CnnlabError(f"spec file not found: {path}") from None
    except OSError as e:
        raise CnnlabError(f"cannot read spec file {path}: {e.strerror or e}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise CnnlabError(
            f"spec file {path} is over {MAX_SPEC_BYTES // 1024} KiB; a spec is a page"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CnnlabError(f"cannot read spec file {path}: not UTF-8 text ({e.reason})") from None
    return text, "toml" if path.suffix.lower() == ".toml" else "yaml"


def parse_text(text: str, fmt: str, where: str) -> dict[str, Any]:
    """YAML or TOML text -> the top-level mapping; every failure is one CnnlabError line."""
    try:
        if fmt == "toml":
            data = tomllib.loads(text)
            _check_shape(data)
        else:
            data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader subclass)
    except SpecTooLarge as e:
        raise CnnlabError(f"spec {where} refused: {e}") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise CnnlabError(f"spec {where} is not valid {fmt.upper()}: {_first_line(e)}") from None
    except ValueError as e:  # a value the syntax allows: 2024-13-01, an int of 5000 digits
        raise CnnlabError(f"spec {where}: cannot read a value: {_first_line(e)}") from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise CnnlabError(
            f"spec {where} refused: nested more than {MAX_DEPTH} levels deep"
        ) from None
    if not isinstance(data, dict):
        raise CnnlabError(f"spec {where}: expected a mapping at the top level")
    return data


def _first_line(e: Exception) -> str:
    # Python's int-digits error goes on with advice to call sys.set_int_max_str_digits()
    text = str(e).strip().split("; use sys.")[0]
    return text.splitlines()[0] if text else type(e).__name__


def _check_shape(data: Any) -> None:
    """The YAML limits for TOML, which has no aliases: counted on the parsed data."""
    stack, seen = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise SpecTooLarge(f"it holds more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise SpecTooLarge(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for pair in value.items() for v in pair)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
