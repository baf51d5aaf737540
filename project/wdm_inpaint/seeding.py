"""Every seed derivation of the package in one place.

A run has one seed; everything random below it (a case, a crop box, a sample of K, a training step, an
augmented mask, a demo case) derives its own seed here, from the run seed and a stable key, so results do
not depend on processing order, worker count or sharding. Each scheme keeps the numbers it always produced.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

SEED_MODULUS = 2**63 - 1
"""Derived seeds are reduced into the positive int64 range (what ``torch.Generator.manual_seed`` accepts)."""

CASE_SEED_MODULUS = 2**31
"""Per-case inference seeds stay below this (a 31-bit seed, as recorded in run records)."""

_CASE_SEED_MULTIPLIER = 1_000_003
"""Prime that spreads the run seed before the case ID's checksum is added."""

_KEY_BYTES = 8
"""Bytes of a digest turned into one integer key."""


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from integers / strings (independent of Python's hash randomisation)."""
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=_KEY_BYTES).digest()
    return int.from_bytes(digest, "little") % SEED_MODULUS


def spawn_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent 64-bit seeds derived from one seed (seed k does not depend on ``count``)."""
    children = np.random.SeedSequence(seed).spawn(count)
    return [int(child.generate_state(1, dtype=np.uint64)[0]) for child in children]


def case_seed(seed: int, case_id: str) -> int:
    """Per-case inference seed derived from the run seed and the case ID (independent of order and sharding)."""
    return (seed * _CASE_SEED_MULTIPLIER + zlib.crc32(case_id.encode())) % CASE_SEED_MODULUS


def index_seed_sequence(seed: int, index: int) -> np.random.SeedSequence:
    """Seed sequence of item ``index`` of a run with ``seed`` (the demo cases)."""
    return np.random.SeedSequence([int(seed), int(index)])


def keyed_seed_sequence(seed: int, key: str, index: int) -> np.random.SeedSequence:
    """Seed sequence of item ``index`` under the string ``key`` (an augmented mask of a case)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    key_int = int.from_bytes(digest[:_KEY_BYTES], "little")
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(key_int, int(index)))


__all__ = [
    "SEED_MODULUS",
    "case_seed",
    "derive_seed",
    "index_seed_sequence",
    "keyed_seed_sequence",
    "spawn_seeds",
]
