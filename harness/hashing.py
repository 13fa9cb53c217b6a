"""Content hashes of host files (the zoo's verification, a model's identity, staging's push-once cache).

A bottom-layer helper: models, the zoo and the device backends all use it, none of them through another.
"""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a host file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
