"""Reading the processor's JSON configuration files (risk policies, patient profiles)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def load_json_file(path: Path, parse: Callable[[Any], T], error: type[Exception],
                   missing: Callable[[], T]) -> T:
    """``parse`` the JSON in ``path``; ``missing()`` if there is no file.

    Malformed JSON and the parser's own ``error`` are raised as ``error`` naming the file.
    """
    if not path.exists():
        return missing()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not JSON: {exc}") from exc
    try:
        return parse(data)
    except error as exc:
        raise error(f"{path}: {exc}") from exc
