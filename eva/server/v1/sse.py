"""Server-sent events as OpenAI streams them: one ``data:`` line of JSON per event."""

from __future__ import annotations

import json
from typing import Any


def sse_data(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
