"""Identifiers as the Databricks APIs send them (numbers, numeric text or text)."""

from __future__ import annotations

import math
from typing import Any


def normalise_run_id(value: Any) -> int | str | None:
    """One run is one run whatever JSON type its id arrives in: 7, 7.0 and "7" are 7."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        return text if text and len(text) <= 64 else None
    return None
