"""Text from the API made valid: what JSON allows and UTF-8 cannot encode never reaches /metrics.

JSON may carry a lone UTF-16 surrogate (``"\\ud83d"``, half an emoji); Python decodes it into a
str that cannot be encoded as UTF-8, so one run name would fail every scrape (and, saved in the
state file, every scrape after a restart too). Each surrogate left alone is replaced with U+FFFD,
the replacement character, where the text is parsed.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def valid_text(value: Any) -> str:
    """``value`` as text that encodes as UTF-8 ("" for None)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.isascii():
        return text
    return _SURROGATE_RE.sub(REPLACEMENT, text)
