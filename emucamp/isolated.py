"""Run one Python simulation in this process and write its result: an isolated run's child.

``python -m emucamp.isolated RESULT.json`` reads ``{"target", "search_path", "params"}`` as
JSON on stdin, calls the simulator, and writes ``{"value": ...}`` or ``{"error": "..."}``
to ``RESULT.json`` (atomically: a run killed mid-write leaves no file). The parent,
:class:`emucamp.simulator.PythonSimulator` with ``isolate=True``, enforces the timeout.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emucamp.simulator import PythonSimulator, describe_error


def _jsonable(value: Any) -> Any:
    """Outputs as JSON numbers; NaN/inf and non-numbers go as strings the parent rejects."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
        value = value.tolist()  # a field output as a numpy array
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return repr(value)
    return number if math.isfinite(number) else repr(number)


def main(argv: list[str]) -> int:
    """Run the request on stdin; write the reply to ``argv[0]``."""
    result_path = Path(argv[0])
    request = json.loads(sys.stdin.read())
    sim = PythonSimulator(request["target"], tuple(request["search_path"]))
    try:
        reply: dict[str, Any] = {"value": _jsonable(sim(**request["params"]))}
    except BaseException as exc:  # the parent records whatever happened
        reply = {"error": describe_error(exc)}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(reply))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
