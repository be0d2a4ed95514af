"""CTF errors and the summary-JSON reader the per-movie stages share.

Light on purpose (no scipy.optimize, pandas): the motion stage reads Import JSON with
`load_json` and must not pay for the CTF fit's imports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emproc.io.micrograph import MicrographReadError


class CtfParameterError(ValueError):
    """Estimation parameters that contradict each other or the micrograph."""


def load_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object from a file, with the file named in any error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise MicrographReadError(f"{path}: file not found") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CtfParameterError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise CtfParameterError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
