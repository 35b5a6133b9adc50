"""A crafted pickle for the tests that checkpoints are never unpickled with code: unpickling a `Payload` creates a
folder, the proof that a loader ran code from the file."""

from __future__ import annotations

import os


class Payload:
    """Unpickling this creates the folder `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)
