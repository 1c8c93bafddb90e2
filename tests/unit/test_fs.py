"""lgsid.fs: local paths and URIs run the same code; checkpoints on a file:// URI."""

from __future__ import annotations

import os

import torch

from lgsid import fs
from lgsid.train.runtime import Checkpointer


def test_to_uri_keeps_uris_and_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fs.to_uri("s3a://bucket/ck") == "s3a://bucket/ck"
    assert fs.to_uri("rel/ck") == f"file://{tmp_path}/rel/ck"
    assert fs._pyarrow_uri("s3a://bucket/ck") == "s3://bucket/ck"
    assert fs._pyarrow_uri("s3n://bucket/ck") == "s3://bucket/ck"
    assert fs.join("s3a://bucket/", "a", "/b/") == "s3a://bucket/a/b"


def test_path_and_file_uri_are_the_same_location(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs.write_bytes("d/x.bin", b"abc")
    uri = f"file://{tmp_path}/d"
    assert fs.exists(uri + "/x.bin")
    assert fs.read_bytes(uri + "/x.bin") == b"abc"
    assert fs.list_files(uri, ".bin") == [uri + "/x.bin"]
    assert [f for f in os.listdir(tmp_path / "d")] == ["x.bin"]  # no temp file left behind
    fs.write_dir(uri + "/copy", {"a.txt": b"1", "sub/b.txt": b"2"})
    assert fs.read_dir(str(tmp_path / "d" / "copy")) == {"a.txt": b"1", "sub/b.txt": b"2"}
    fs.delete_dir(uri + "/copy")
    assert not fs.exists(uri + "/copy")
    assert fs.list_files(uri + "/absent") == []


def test_checkpointer_on_a_file_uri_never_creates_a_scheme_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ck = Checkpointer(f"file://{tmp_path}/ckpts", "run-a", keep=2)
    assert ck.latest() is None
    for step in (1, 2, 3):
        ck.save(step, {"trainable": {"w": torch.full((2,), float(step))}})
    assert [p.rsplit("/", 1)[-1] for p in ck.list()] == ["step-00000002.pt", "step-00000003.pt"]
    state = ck.latest()
    assert state["step"] == 3 and torch.equal(state["trainable"]["w"], torch.full((2,), 3.0))
    assert sorted(os.listdir(tmp_path)) == ["ckpts"]  # not a folder named 'file:'
    # the same directory given as a plain path is the same checkpoint
    assert Checkpointer(str(tmp_path / "ckpts"), "run-a").latest()["step"] == 3


def test_scheme_uris_are_not_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for uri in ("s3a://b/x", "file:///tmp/x", "file:/tmp/x", "mlflow-artifacts:/lgsid", "dbfs:/lgsid"):
        assert fs.is_uri(uri) and fs.to_uri(uri) == uri, uri
    for path in ("lgsid-work/ck", "/tmp/x", "C:\\x", "./a:b"):
        assert not fs.is_uri(path), path
    assert os.listdir(tmp_path) == []


def test_experiment_artifact_root_on_the_tracking_server_scheme(tmp_path, monkeypatch):
    """``mlflow.artifact_root: mlflow-artifacts:/lgsid`` (a proxied artifact store) is passed to MLflow
    as is: no ``./mlflow-artifacts:/lgsid`` folder in the working directory."""
    import mlflow

    from lgsid.config import load_config
    from lgsid.tracking import setup_mlflow

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "mlflow.artifact_root=mlflow-artifacts:/lgsid",
                             "mlflow.experiment=artifact-root-scheme"])
    exp_id = setup_mlflow(cfg)
    assert mlflow.get_experiment(exp_id).artifact_location == "mlflow-artifacts:/lgsid"
    assert os.listdir(tmp_path / "cwd") == []


def test_local_path_of_paths_and_file_uris_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fs.local_path(f"file://{tmp_path}/r") == f"{tmp_path}/r"
    assert fs.local_path("rel/r") == f"{tmp_path}/rel/r"
    assert fs.local_path("mock:///r") is None  # pyarrow's in-memory filesystem stands in for an object store
