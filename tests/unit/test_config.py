import pytest

from lgsid.config import explain, load_config, replace
from lgsid.errors import ConfigError


def test_defaults_load_and_overrides_apply():
    cfg = load_config(None, ["negatives.k=8", "reward.lr=1", "tokenizer.codebook_sizes=[8, 4]"])
    assert cfg.negatives.k == 8
    assert cfg.reward.lr == 1.0 and isinstance(cfg.reward.lr, float)
    assert cfg.tokenizer.codebook_sizes == [8, 4]


def test_shipped_configs_load():
    assert load_config("conf/local.yaml").ingest.source == "demo"
    assert load_config("conf/cluster.example.yaml").storage.backend == "spark"


@pytest.mark.parametrize(
    "override, match",
    [
        ("negatives.kk=1", r"unknown key 'negatives.kk'"),
        ("nosuch.k=1", r"unknown key 'nosuch'"),
        ("negatives.k=abc", r"bad value for 'negatives.k'"),
        ("negatives.k=1", r"'negatives.k': must be >= 2"),
        ("encoder.pooling=max", r"bad value for 'encoder.pooling'"),
        ("negatives.k", r"expected key=value"),
    ],
)
def test_bad_override_names_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("pairs:\n  s_th: 1\n  bogus: 2\n")
    with pytest.raises(ConfigError, match=r"x.yaml: unknown key 'pairs.bogus'"):
        load_config(p)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")


def test_replace_validates_and_explain_lists_help():
    cfg = replace(load_config(None), pairs={"s_th": 3})
    assert cfg.pairs.s_th == 3
    with pytest.raises(ConfigError, match="pairs.history_cap"):
        replace(cfg, pairs={"history_cap": 1})
    text = explain()
    assert "negatives:" in text and "h3_resolution" in text and "#" in text
