"""What `mattex serve` answers a request that fails, and how that answer crosses PyTriton.

A client's mistake (a frame of the wrong shape, NaN values, a frame over `max_pixels`) is answered
400 / INVALID_ARGUMENT with mattex's typed message alone ("InputShapeError: ..."); any other
failure is the server's own: 500 / INTERNAL, saying only that the server's log has the details
(where PyTriton logs the whole traceback). No answer carries a traceback or a path of the
server's machine.

PyTriton 0.7 answers every exception of the inference callable with 500 / INTERNAL, its message
the traceback formatted in this process and again in Triton's Python stub. So the callable
raises an exception whose text carries the answer framed (`framed`), and the stub's model
(triton_proxy_model.py, PyTriton's own model around it) finds it in that text (`unframe`) and
answers with it. Standard library only: the stub imports this module too.
"""

from __future__ import annotations

import json
import re

INVALID_ARG = "INVALID_ARG"  # Triton's TRITONSERVER_ERROR_INVALID_ARG: HTTP 400, gRPC INVALID_ARGUMENT
INTERNAL = "INTERNAL"  # HTTP 500, gRPC INTERNAL
SERVER_FAILED = "the server failed on this request ({}); its log has the details"

# Record separators around JSON: json.dumps escapes control characters, so neither separator can
# occur inside, and no traceback line holds one.
_FRAME = re.compile("\x1emattex-answer (.*?)\x1e", re.S)


def framed(code: str, message: str) -> str:
    """The text of an exception that `unframe` reads back as (code, message)."""
    return f"\x1emattex-answer {json.dumps({'code': code, 'message': message})}\x1e"


def unframe(text: str) -> tuple[str, str]:
    """The (code, message) framed in `text` (an exception's text wrapped in tracebacks); an
    INTERNAL answer naming no detail where there is none (PyTriton's own failures)."""
    found = _FRAME.search(text)
    if found is None:
        return INTERNAL, SERVER_FAILED.format("an error outside mattex")
    answer = json.loads(found[1])
    return answer["code"], answer["message"]
