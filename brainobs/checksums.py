"""Size and sha256 of DataJoint's ``<npy@main>`` arrays, like every other file brainobs writes to the store.

brainobs replaces DataJoint's ``<npy>`` codec (``datajoint.builtin_codecs.NpyCodec``, DataJoint 2.3.5) by a
subclass of the same name: it writes the same ``.npy`` file at the same path and adds ``size`` (bytes) and
``sha256`` (of the whole file) to the JSON the column holds. A plain DataJoint client reads these columns
with the stock codec, which ignores the two extra keys. Table definitions stay ``<npy@main>``.

Readers check the size on every read (``np.asarray(ref)``, ``ref.load()``, :func:`read_npy_into`) and the
sha256 inside :func:`verifying` (NWB export and release, which read every array of an item once). Arrays
written before this codec (no ``size`` in their JSON) are read unchecked. A mismatch raises
:class:`StoreFileError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from contextvars import ContextVar

import numpy as np
from datajoint import codecs
from datajoint.builtin_codecs.npy import NpyCodec, NpyRef

_VERIFY_SHA256: ContextVar[bool] = ContextVar("brainobs_verify_sha256", default=False)


class StoreFileError(RuntimeError):
    """A file in the object store is missing, or differs from what its row recorded."""


@contextlib.contextmanager
def verifying() -> Iterator[None]:
    """Check the sha256 of every ``<npy>`` array read inside this block, not only its size."""
    token = _VERIFY_SHA256.set(True)
    try:
        yield
    finally:
        _VERIFY_SHA256.reset(token)


def sha256_checked() -> bool:
    """True inside :func:`verifying`."""
    return _VERIFY_SHA256.get()


def recorded(ref: NpyRef) -> tuple[int | None, str | None]:
    """The size and sha256 that ``ref``'s row recorded (None for arrays written before they were)."""
    meta = getattr(
        ref, "_meta", {}
    )  # NpyRef keeps the column's JSON here; it has no public accessor in DataJoint 2.3.5
    return meta.get("size"), meta.get("sha256")


def check_size(ref: NpyRef, name: str, actual: int) -> None:
    size, _ = recorded(ref)
    if size is not None and actual != size:
        raise StoreFileError(f"{name}: {actual} bytes in the object store, {size} recorded when it was written")


def check_sha256(ref: NpyRef, name: str, digest: str) -> None:
    _, sha256 = recorded(ref)
    if sha256 is not None and digest != sha256:
        raise StoreFileError(f"{name}: sha256 differs from the one recorded when it was written (altered)")


class CheckedNpyRef(NpyRef):
    """DataJoint's lazy array reference, whose :meth:`load` checks the bytes it read against the row."""

    __slots__ = ()

    def load(self, mmap_mode=None):
        if mmap_mode is not None or self._cached is not None:
            return super().load(mmap_mode)
        data = self._backend.get_buffer(self.path)
        name = f"{self.path} (store {self.store})"
        check_size(self, name, len(data))
        if sha256_checked():
            check_sha256(self, name, hashlib.sha256(data).hexdigest())
        self._cached = np.load(io.BytesIO(data), allow_pickle=False)
        return self._cached


codecs.unregister_codec("npy")  # replaced by the subclass below, under the same name


class ChecksummedNpyCodec(NpyCodec):
    """``<npy@store>``: DataJoint's codec, with the file's size and sha256 in the column's JSON."""

    name = "npy"

    def encode(self, value, *, key: dict | None = None, context: dict | None = None, store_name: str | None = None):
        schema, table, field, primary_key = self._extract_context(key, context)
        config = self._codec_config(key, context)
        path, _ = self._build_path(schema, table, field, primary_key, ext=".npy", store_name=store_name, config=config)
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        data = buffer.getvalue()
        self._get_backend(store_name, config=config).put_buffer(data, path)
        return {
            "path": path,
            "store": store_name,
            "dtype": str(value.dtype),
            "shape": list(value.shape),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    def decode(self, stored: dict, *, key: dict | None = None, context: dict | None = None) -> CheckedNpyRef:
        backend = self._get_backend(stored.get("store"), config=self._codec_config(key, context))
        return CheckedNpyRef(stored, backend)
