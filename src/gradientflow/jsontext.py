"""Standard JSON (RFC 8259) for every file the package writes and every ``--json`` output.

Python's ``json`` writes the bare tokens ``NaN`` and ``Infinity``, which strict parsers (JavaScript's
``JSON.parse``, Go's ``encoding/json``) refuse; a diverged run has exactly such numbers. Here:

- NaN is written as ``null`` (a number that is not there);
- +inf and -inf as the strings ``"inf"`` and ``"-inf"`` (Python's ``float`` reads them back);
- with ``exact=True`` (files read back by this package, such as the stored measurements of
  ``reproduce``), NaN as the string ``"nan"``, and ``loads(..., exact=True)`` turns the three strings
  back into floats, so a value survives the round trip bit for bit.

NumPy floats are written as floats. ``dumps`` always passes ``allow_nan=False``, so a non-finite number
that slipped through would raise instead of writing non-standard JSON.
"""

from __future__ import annotations

import json
import math
import numbers

_TEXT = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def clean(obj, *, exact: bool = False):
    """``obj`` with every non-finite float replaced as the module says (containers copied, recursively)."""
    if isinstance(obj, dict):
        return {k: clean(v, exact=exact) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v, exact=exact) for v in obj]
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        value = float(obj)
        if math.isnan(value):
            return "nan" if exact else None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return obj


def dumps(obj, *, exact: bool = False, **kwargs) -> str:
    """Standard JSON text for ``obj`` (``json.dumps``'s keyword arguments pass through)."""
    return json.dumps(clean(obj, exact=exact), allow_nan=False, **kwargs)


def _restored(obj):
    if isinstance(obj, dict):
        return {k: _restored(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restored(v) for v in obj]
    if isinstance(obj, str) and obj in _TEXT:
        return _TEXT[obj]
    return obj


def loads(text: str, *, exact: bool = False):
    """``json.loads``; with ``exact``, the strings "nan", "inf" and "-inf" become floats again. Bare
    ``NaN`` and ``Infinity`` tokens, which older versions wrote, are still read."""
    obj = json.loads(text)
    return _restored(obj) if exact else obj
