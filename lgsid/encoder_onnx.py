"""The encoder's transformer on ONNX Runtime: export, per-weights cache and inference session.

:class:`lgsid.encoder.Encoder` runs its inference passes (``encode``) on ONNX Runtime when
``encoder.runtime`` resolves to ``onnxruntime`` (:func:`resolve_runtime`). Only the transformer is
exported: the graph maps the tokenizer's (B, T) int64 inputs to the (B, T, D) last hidden state,
and pooling and L2-normalisation stay the torch functions of :mod:`lgsid.encoder`, so one ONNX
model serves any ``encoder.pooling`` / ``encoder.normalize``.

An export is a directory holding ``model.onnx`` and ``export.json`` (:data:`EXPORT_INFO`): the
SHA-256 of the weights it was exported from (:func:`weights_sha256`), the input names, the opset
and the torch version. Exports are cached in ``encoder.onnx_cache_dir/<sha256>``, so each set of
weights (the base checkpoint, each LoRA-merged aligned version) is exported once per machine; a
registered aligned encoder also carries its export as the MLflow artifact ``onnx``
(:func:`lgsid.gdpo.log_aligned_encoder`), and an export given that way is used only when its
recorded hash matches the weights loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from lgsid.errors import ConfigError, EnvironmentSetupError

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

RUNTIMES = ("auto", "torch", "onnxruntime")
MODEL_FILE = "model.onnx"
EXPORT_INFO = "export.json"
OPSET = 17
FORMAT = 1
"""Version of the export layout (graph inputs/outputs, ``export.json``); part of every cache key."""
OUTPUT = "last_hidden_state"
INSTALL_HINT = "pip install 'onnxruntime==1.32.*'"
ONNX_INSTALL_HINT = "pip install 'onnx==1.17.0'"


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` imports here."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(runtime: str, device: str, cpu_bf16: bool = False) -> str:
    """The runtime of the inference passes: ``torch`` or ``onnxruntime``.

    ``auto`` is ONNX Runtime (fp32) on a CPU where torch would run fp32, and torch elsewhere: on
    CUDA, and on a CPU where torch runs bf16 (``encoder.cpu_bf16`` resolved on: native AVX512-BF16
    or AMX). There, on one thread, torch bf16 ran 1.56x ONNX Runtime's prompts/s, while ONNX Runtime
    ran 1.32x torch fp32 (``bench/embed.py``, docs/scale.md).

    Args:
        runtime: ``encoder.runtime``: ``auto``, ``torch`` or ``onnxruntime``.
        device: The encoder's device (``cpu``, ``cuda``, ``cuda:N``).
        cpu_bf16: Whether torch encodes under bf16 autocast on this CPU (:func:`lgsid.train.runtime.use_cpu_bf16`).

    Raises:
        ConfigError: unknown runtime.
        EnvironmentSetupError: ``onnxruntime`` asked for but not installed.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"invalid value for 'encoder.runtime': {runtime!r} (valid: {', '.join(RUNTIMES)})")
    if runtime == "torch":
        return "torch"
    if runtime == "onnxruntime":
        if not onnxruntime_available():
            raise EnvironmentSetupError(f"encoder.runtime=onnxruntime but the onnxruntime package is not installed: {INSTALL_HINT} (or set encoder.runtime=auto or torch)")
        return "onnxruntime"
    return "onnxruntime" if torch.device(device).type == "cpu" and not cpu_bf16 and onnxruntime_available() else "torch"


def weights_sha256(model: nn.Module, input_names: Sequence[str]) -> str:
    """Hex SHA-256 of a model's weights (every ``state_dict`` entry: name, dtype, shape, bytes), the input names and :data:`FORMAT`/:data:`OPSET`.

    The cache key of an export: equal weights give the same ONNX model whatever the checkpoint
    path or model version they came from. ~0.1 s for the 22M-parameter MiniLM.
    """
    h = hashlib.sha256(f"lgsid-onnx format={FORMAT} opset={OPSET} inputs={','.join(input_names)}\n".encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _HiddenStates(nn.Module):
    """The transformer with positional inputs, for ``torch.onnx.export``: (B, T) int64 inputs -> (B, T, D) last hidden state."""

    def __init__(self, model: nn.Module, input_names: Sequence[str]):
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).last_hidden_state


def export(model: nn.Module, tokenizer, input_names: Sequence[str], sha: str, out_dir: str) -> str:
    """Export ``model`` (the transformer, LoRA merged) to ``out_dir/model.onnx`` + ``export.json``; returns ``out_dir``.

    Legacy TorchScript exporter (``dynamo=False``), batch and sequence axes dynamic, opset
    :data:`OPSET`. The export runs in eval mode, and the model is put back in eval mode after it:
    the exporter restores the training flag of the module it was given, and a freshly built wrapper
    starts in training mode, which would leave dropout on in every later torch pass.

    Args:
        model: The Hugging Face transformer (no ``peft`` wrapper).
        tokenizer: Its tokenizer (builds the example batch).
        input_names: The graph inputs, in order (``input_ids``, ``attention_mask`` [, ``token_type_ids``]).
        sha: :func:`weights_sha256` of ``model``, recorded in ``export.json``.
        out_dir: Directory to write (created).

    Raises:
        EnvironmentSetupError: the ``onnx`` package (which the exporter needs) is not installed.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx.export serialises through it)
    except ImportError:
        raise EnvironmentSetupError(f"exporting the encoder to ONNX needs the onnx package: {ONNX_INSTALL_HINT}") from None
    os.makedirs(out_dir, exist_ok=True)
    device = next(model.parameters()).device
    wrapper = _HiddenStates(model, input_names).eval()
    example = tokenizer(["a short text", "a somewhat longer example text"], padding=True, return_tensors="pt")
    args = tuple(example[n].to(device) for n in input_names)
    axes = {n: {0: "batch", 1: "sequence"} for n in (*input_names, OUTPUT)}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer's notes on shape-dependent Python branches (padding length, causal flag) are
            # constant for an encoder whose mask spans the sequence; the equivalence test covers them
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                wrapper, args, os.path.join(out_dir, MODEL_FILE), input_names=list(input_names), output_names=[OUTPUT],
                dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )
    finally:
        wrapper.eval()  # the exporter leaves the freshly built wrapper (and so ``model``) in training mode
    info = {"weights_sha256": sha, "input_names": list(input_names), "output": OUTPUT, "opset": OPSET, "format": FORMAT, "torch": torch.__version__}
    with open(os.path.join(out_dir, EXPORT_INFO), "w") as f:
        json.dump(info, f, indent=2)
    return out_dir


def export_sha(export_dir: str | None) -> str | None:
    """The weights hash an export directory records, or None (no directory, no ``model.onnx`` or unreadable ``export.json``)."""
    if not export_dir or not os.path.isfile(os.path.join(export_dir, MODEL_FILE)):
        return None
    try:
        with open(os.path.join(export_dir, EXPORT_INFO)) as f:
            return json.load(f).get("weights_sha256")
    except (OSError, ValueError):
        return None


def find_export(root: str) -> str | None:
    """The first directory under ``root`` holding an export (``model.onnx`` + ``export.json``), e.g. in a downloaded MLflow model."""
    for d, _, files in sorted(os.walk(root)):
        if MODEL_FILE in files and EXPORT_INFO in files:
            return d
    return None


def cached_export(model: nn.Module, tokenizer, input_names: Sequence[str], sha: str, cache_dir: str) -> str:
    """The export of these weights in ``cache_dir/<sha>``: exported there first if it is not yet.

    The export is written to a scratch directory beside it and renamed into place, so concurrent
    processes (Spark Python workers) never read half a file; the first rename wins.
    """
    cache_dir = os.path.expanduser(cache_dir)
    final = os.path.join(cache_dir, sha)
    if export_sha(final) == sha:
        return final
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=cache_dir)
    try:
        export(model, tokenizer, input_names, sha, tmp)
        if os.path.isdir(final):  # a stale or broken entry (no matching export.json)
            if export_sha(final) == sha:
                return final
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if export_sha(final) != sha:  # not another process' finished export either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def session(export_dir: str, threads: int, device: str = "cpu") -> "onnxruntime.InferenceSession":
    """An ONNX Runtime session on ``export_dir/model.onnx``: all graph optimisations, ``threads`` intra-op threads.

    CUDA is used when ``device`` is CUDA and the installed onnxruntime has the CUDA provider; CPU otherwise.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(os.path.join(export_dir, MODEL_FILE), so, providers=providers)
