"""What every cnnlab config shares: a frozen dataclass that round-trips through JSON.

``TrainConfig`` (Fashion-MNIST) and ``TransferConfig`` (transfer learning) inherit these
methods; each dataclass validates itself in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

from cnnlab.errors import CnnlabError


class FrozenConfig:
    """Mixin for frozen config dataclasses: ``replace``, ``to_dict`` and a strict ``from_dict``."""

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()  # type: ignore[call-overload]
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from ``to_dict()`` output; an unknown field is a one-line error naming it."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise CnnlabError(f"unknown config field(s): {', '.join(unknown)}")
        data = dict(data)
        for name, value in data.items():
            if str(fields[name].type).startswith("tuple") and isinstance(value, list):
                data[name] = tuple(value)
        return cls(**data)
