"""JSON answers that cannot fail to render, whatever the request held.

Starlette's JSONResponse refuses NaN and encodes with `ensure_ascii=False`, so echoing a JSON
string holding a lone surrogate (legal in JSON text, not encodable as UTF-8) would turn into a
500. Escaping to ASCII keeps every echoed value representable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response


def json_response(
    payload: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(payload, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code, headers, media_type="application/json")


def json_error(
    status_code: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return json_response({"error": message}, status_code, headers)
