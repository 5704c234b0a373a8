"""Seeds derived from a base seed and a few names, stable across processes and machines (docs/reliability.md)."""

import hashlib


def derive_seed(base: int, *parts) -> int:
    """A 63-bit seed from the base seed and the parts (class name, IPC, chunk index, ...)."""
    h = hashlib.sha256(repr((int(base),) + tuple(str(p) for p in parts)).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)
