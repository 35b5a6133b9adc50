"""The one progress display: tqdm on stderr. Off when disabled or when stderr is not a terminal and no
refresh interval is asked for; rates (tokens/s, MB/s) come from tqdm's own unit scaling."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
             unit_scale: bool = True, mininterval: float = 1.0, **kwargs) -> tqdm:
    """A tqdm bar; call `.update(n)` as work completes and `.close()` (or use it as a context manager)."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, disable=not enabled, file=sys.stderr,
                mininterval=mininterval, dynamic_ncols=True, **kwargs)
