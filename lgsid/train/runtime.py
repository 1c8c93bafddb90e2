"""Device, autocast, seeds and resumable checkpoints: the same code on CPU and CUDA."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
from typing import Any, Iterator

import numpy as np
import torch

from lgsid import fs
from lgsid.errors import ConfigError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is a :class:`ConfigError`."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("invalid value for 'train.device': 'cuda' but torch sees no CUDA device (use auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"invalid value for 'train.device': {device!r} (valid: auto, cpu, cuda)")
    return device


def release_memory() -> bool:
    """Collect garbage and hand the C heap's free pages back to the OS (glibc's ``malloc_trim(0)``).

    A training loop leaves its freed batches and activations as free but resident pages of the
    process's heap; later driver-side work (re-embedding, the geo checks) would otherwise start from
    that peak. Returns whether the heap was trimmed (False where the C library has no ``malloc_trim``).
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 matrix products natively (oneDNN: AVX512-BF16 or AMX), so bf16 autocast pays."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def use_cpu_bf16(setting: str, key: str = "encoder.cpu_bf16") -> bool:
    """``encoder.cpu_bf16`` / ``evaluate.cpu_bf16`` (``key``): ``on`` / ``off``, or ``auto`` = on exactly when :func:`cpu_bf16_supported`."""
    if setting not in ("auto", "on", "off"):
        raise ConfigError(f"invalid value for '{key}': {setting!r} (valid: auto, on, off)")
    return setting == "on" or (setting == "auto" and cpu_bf16_supported())


@contextlib.contextmanager
def autocast(device: str, cpu_bf16: bool = False) -> Iterator[None]:
    """bf16 autocast on CUDA; on CPU bf16 autocast when ``cpu_bf16``, else a no-op (fp32), so one training step serves both."""
    if device == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    elif cpu_bf16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def fingerprint(obj: Any) -> str:
    """Short stable hash of a JSON-able object (the run configuration a checkpoint belongs to)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Checkpointer:
    """Resumable checkpoints ``<root>/<run key>/step-<N>.pt``, keeping the newest ``keep``.

    ``root`` is a local path or a URI (``file://``, ``s3a://``, …): every read and write goes through
    :mod:`lgsid.fs`, so a checkpoint directory on an object store works like a local one. A
    checkpoint holds the trainable parameters, the optimiser state, the step, the loss history and
    the RNG states; the run key is a fingerprint of the configuration, so a changed config never
    resumes from a foreign checkpoint.
    """

    def __init__(self, root: str, key: str, keep: int = 2):
        self.dir = fs.join(fs.to_uri(root), key)
        self.keep = keep

    def save(self, step: int, state: dict) -> str:
        """Write the checkpoint of ``step`` (atomically: temp file + move) and drop all but the newest ``keep``."""
        state = dict(state, step=step, rng={
            "python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
        })
        buf = io.BytesIO()
        torch.save(state, buf)
        path = fs.join(self.dir, f"step-{step:08d}.pt")
        fs.write_bytes(path, buf.getvalue())  # a crash never leaves a half-written checkpoint
        for old in self.list()[: -self.keep]:
            fs.delete_file(old)
        return path

    def list(self) -> list[str]:
        """Checkpoint locations, oldest first."""
        return [p for p in fs.list_files(self.dir, ".pt") if p.rsplit("/", 1)[-1].startswith("step-")]

    def latest(self) -> dict | None:
        """The newest checkpoint's state (RNG states restored), or ``None``."""
        files = self.list()
        if not files:
            return None
        state = torch.load(io.BytesIO(fs.read_bytes(files[-1])), map_location="cpu", weights_only=False)
        rng = state.get("rng", {})
        if rng:
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
        return state
