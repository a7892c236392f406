"""Checkpoints: written atomically, read without executing pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so `torch.load(...,
weights_only=True)` reads it: nothing in the file can run code. It is written to a temporary file in the
target folder, flushed to disk and renamed over the destination, so a crash (even SIGKILL) leaves either
the old file or the new one, never a truncated file (and, after SIGKILL, the temporary file:
`remove_partial_writes` deletes it, as a training resume does). The file gets the permissions any new
file of the user's gets (the temporary file's private 0600 is widened per the umask before the rename).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt, or not one of ours."""


_TEMPORARY_PREFIX, _TEMPORARY_SUFFIX = ".{name}.", ".tmp"
"""save_checkpoint's temporary file beside `name`: `.{name}.<random>.tmp`."""


def remove_partial_writes(path: str | Path) -> int:
    """Delete the temporary files that `save_checkpoint(..., path)` left when its process was killed
    mid-write (each as large as a checkpoint; nothing else removes them); return the bytes freed."""
    path = Path(path)
    prefix, freed = _TEMPORARY_PREFIX.format(name=path.name), 0
    for tmp in list(path.parent.iterdir()) if path.parent.is_dir() else []:
        if tmp.name.startswith(prefix) and tmp.name.endswith(_TEMPORARY_SUFFIX) and tmp.is_file():
            with contextlib.suppress(FileNotFoundError):
                size = tmp.stat().st_size
                tmp.unlink()
                freed += size
    return freed


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to `path` atomically (temporary file + fsync + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=_TEMPORARY_PREFIX.format(name=path.name), suffix=_TEMPORARY_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fchmod(f.fileno(), new_file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and "unexpected pos" in str(e)):
            # a full disk or a file size limit: torch's zip writer reports a short write as "unexpected pos"
            reason = e.strerror if isinstance(e, OSError) and e.strerror else "the write stopped short"
            raise CheckpointError(
                f"checkpoint {str(path)!r} could not be written ({reason}: is the disk full or a file size "
                "limit reached?); the file there, if any, is unchanged"
            ) from e
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; clear errors for missing or damaged files.

    Only tensors and plain containers are accepted (`weights_only=True`). Official YOLOv7 checkpoints,
    which pickle whole modules, go through `yolov7lib.models.load_official` instead.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {unreadable_reason(path, e)}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a dict")
    return state


def unreadable_reason(path: Path, err: Exception) -> str:
    """Why torch.load with weights_only=True failed on `path`, in one line (torch's own messages run to
    paragraphs and suggest weights_only=False, which would run the file's code)."""
    if isinstance(err, PermissionError):  # (a truncated archive can raise other OSErrors: classified below)
        return err.strerror or str(err)
    text = str(err)
    archive = zipfile.is_zipfile(path)
    try:
        with open(path, "rb") as f:
            pickled = f.read(1) == b"\x80"  # a bare pickle (protocol 2+), as the pre-1.6 format also was
    except OSError:
        pickled = False
    if not (archive or pickled):
        return "not a complete torch.save archive (truncated, damaged, or another kind of file)"
    if "weights_only" in text or "Unsupported global" in text:
        return (
            "it pickles Python objects, which are not unpickled here (a pickled module, e.g. an official "
            "YOLOv7 .pt? load it with yolov7lib.load_official)"
        )
    first = text.splitlines()[0] if text else ""
    return f"a damaged archive ({type(err).__name__}: {first[:200]})"


def new_file_mode() -> int:
    """The permissions open() would give a new file: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch random states as tensors and plain values (weights_only-safe)."""
    version, mt, gauss = random.getstate()
    # the legacy global NumPy generator is state that libraries may use: capture it too
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in mt.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU of the machine that saved it: a resume may see fewer GPUs (or more)
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
