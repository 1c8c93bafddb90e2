"""Input fingerprints: what makes a step's rerun a no-op.

A step that registers a model or rewrites a table computes one fingerprint over everything its
output depends on: the resolved config sections it reads and the Delta versions (or MLflow model
versions) of its inputs. The fingerprint is stored with the output (model-version tag
``lgsid.input_fingerprint``, or a table property); a rerun whose fingerprint matches the stored one
reuses the output instead of writing or registering it again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

TAG = "lgsid.input_fingerprint"


def fingerprint(config: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """SHA-256 (hex, 16 chars) of the canonical JSON of ``{"config": config, "inputs": inputs}``.

    Args:
        config: The resolved config sections the step reads, e.g. ``{"tokenizer": cfg.to_dict()["tokenizer"]}``.
        inputs: Versions of the inputs, e.g. ``{"item_embeddings": 4, "encoder": "models:/lgsid-aligned-encoder/2"}``.

    Key order does not matter; any change in a value does.
    """
    payload = json.dumps({"config": config, "inputs": inputs}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def find_model_version(client, name: str, fp: str):
    """The newest version of registered model ``name`` tagged with fingerprint ``fp``, or None."""
    import mlflow

    try:
        versions = client.search_model_versions(f"name = '{name}' and tags.`{TAG}` = '{fp}'")
    except mlflow.exceptions.MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version)) if versions else None
