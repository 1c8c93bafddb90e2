import dataclasses

import pytest
import yaml

from lgsid.config import EncoderConfig, NegativesConfig, TokenizerConfig, explain, load_config, replace
from lgsid.errors import ConfigError

# Keys in which environments may differ: where things are (tables, data, checkpoints, tracking),
# what they are called, and where the embedded Spark session runs. Everything else is a model
# choice and comes from conf/model.yaml.
ENVIRONMENT_KEYS = {
    "storage.root", "storage.backend", "storage.staging_dir", "storage.storage_options",
    "spark.master", "spark.app_name", "spark.shuffle_partitions", "spark.driver_memory", "spark.petastorm_cache_dir", "spark.conf",
    "ingest.source", "ingest.foursquare_path", "ingest.items_path", "ingest.interactions_path",
    "train.checkpoint_dir",
    "mlflow.tracking_uri", "mlflow.artifact_root", "mlflow.experiment", "mlflow.encoder_model_name", "mlflow.sid_model_name",
    "evaluate.out_dir", "pipeline.work_dir",
}


def test_defaults_load_and_overrides_apply():
    cfg = load_config(None, ["negatives.k=8", "reward.lr=1", "tokenizer.codebook_sizes=[8, 4]"])
    assert cfg.negatives.k == 8
    assert cfg.reward.lr == 1.0 and isinstance(cfg.reward.lr, float)
    assert cfg.tokenizer.codebook_sizes == [8, 4]


def test_on_off_are_strings_in_files_and_overrides(tmp_path):
    """YAML 1.1 reads on/off/yes/no as booleans; the config reads them as the strings a choice like cpu_bf16 takes."""
    p = tmp_path / "c.yaml"
    p.write_text("encoder:\n  cpu_bf16: off\nevaluate:\n  log_mlflow: false\n")
    cfg = load_config(p, ["evaluate.cpu_bf16=on"])
    assert (cfg.encoder.cpu_bf16, cfg.evaluate.cpu_bf16, cfg.evaluate.log_mlflow) == ("off", "on", False)
    with pytest.raises(ConfigError, match="evaluate.log_mlflow"):
        load_config(None, ["evaluate.log_mlflow=yes"])  # a bool key takes true / false only


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads 5e-3 as a string; the config reads it as YAML 1.2 does, the number 0.005, in files and --set."""
    p = tmp_path / "c.yaml"
    p.write_text("evaluate:\n  tiger_lr: 5e-3\n  din_lr: 1.5E+1\n  tiger_epochs: 7\n")
    cfg = load_config(p, ["gdpo.lr=3e-4"])
    assert (cfg.evaluate.tiger_lr, cfg.evaluate.din_lr, cfg.gdpo.lr) == (0.005, 15.0, 3e-4)
    assert cfg.evaluate.tiger_epochs == 7 and isinstance(cfg.evaluate.tiger_epochs, int)
    assert load_config(None, ["evaluate.out_dir=5e3x"]).evaluate.out_dir == "5e3x"  # not a number: stays a string


def test_shipped_configs_load():
    assert load_config("conf/local.yaml").ingest.source == "demo"
    assert load_config("conf/cluster.example.yaml").storage.backend == "spark"


def test_environments_differ_only_in_locations_and_names():
    local, cluster = load_config("conf/local.yaml").flat(), load_config("conf/cluster.example.yaml").flat()
    differ = {k for k in local if local[k] != cluster[k]}
    assert differ - ENVIRONMENT_KEYS == set(), {k: (local[k], cluster[k]) for k in differ - ENVIRONMENT_KEYS}
    assert {"storage.root", "mlflow.tracking_uri"} <= differ  # the check compares two real environments
    for env in ("conf/local.yaml", "conf/cluster.example.yaml"):
        model_keys = {f"{s}.{k}" for s, v in yaml.safe_load(open(env)).items() if isinstance(v, dict) for k in v}
        assert model_keys - ENVIRONMENT_KEYS == set(), f"{env} sets model choices; move them to conf/model.yaml"


@pytest.mark.parametrize(
    "override, match",
    [
        ("negatives.kk=1", r"unknown key 'negatives.kk'"),
        ("nosuch.k=1", r"unknown key 'nosuch'"),
        ("negatives.k=abc", r"bad value for 'negatives.k': 'abc'"),
        ("negatives.k=1", r"'negatives.k': must be >= 2"),
        ("encoder.pooling=max", r"bad value for 'encoder.pooling'"),
        ("negatives.k", r"expected key=value"),
        ('tokenizer.codebook_sizes=["a",4]', r"bad value for 'tokenizer.codebook_sizes' element \[0\]: 'a' \(Input should be a valid integer\)"),
        ("tokenizer.codebook_sizes=[8.7, 4]", r"bad value for 'tokenizer.codebook_sizes' element \[0\]: 8.7"),
        ("tokenizer.codebook_sizes=8", r"bad value for 'tokenizer.codebook_sizes': 8 \(Input should be a valid list\)"),
        ("demo.seed=true", r"bad value for 'demo.seed': True"),
        ("negatives=3", r"bad value for 'negatives': 3 \(expected a mapping"),
    ],
)
def test_bad_override_names_the_key(override, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_bad_list_element_names_file_and_key(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("tokenizer:\n  codebook_sizes: [8.7, 4]\n")
    with pytest.raises(ConfigError, match=r"^.*x.yaml: bad value for 'tokenizer.codebook_sizes' element \[0\]: 8.7 .*$"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"^--set tokenizer.codebook_sizes \(over .*x.yaml\): bad value for 'tokenizer.codebook_sizes' element \[0\]: 'a'"):
        load_config(p, ['tokenizer.codebook_sizes=["a",4]'])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("pairs:\n  s_th: 1\n  bogus: 2\n")
    with pytest.raises(ConfigError, match=r"x.yaml: unknown key 'pairs.bogus' \(valid keys under 'pairs': s_th, "):
        load_config(p)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")


def test_include_is_relative_and_the_including_file_wins(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "model.yaml").write_text("negatives:\n  k: 8\n  n_far: 2\npairs:\n  s_th: 4\n")
    env = tmp_path / "env.yaml"
    env.write_text("include: shared/model.yaml\nnegatives:\n  k: 12\nstorage:\n  root: /data/t\n")
    cfg = load_config(env, ["pairs.s_th=5"])
    assert (cfg.negatives.k, cfg.negatives.n_far, cfg.pairs.s_th, cfg.storage.root) == (12, 2, 5, "/data/t")


def test_include_errors_name_the_file_that_set_the_key(tmp_path):
    (tmp_path / "model.yaml").write_text("negatives:\n  k: many\n")
    env = tmp_path / "env.yaml"
    env.write_text("include: [model.yaml]\nstorage:\n  root: /data/t\n")
    with pytest.raises(ConfigError, match=r"model.yaml: bad value for 'negatives.k': 'many'"):
        load_config(env)
    for text, match in [
        ("include: other.yaml\n", r"config file not found: .*other.yaml \(included from .*env.yaml\)"),
        ("include: env.yaml\n", r"include cycle"),
        ("include: {a: 1}\n", r"env.yaml: bad value for 'include'"),
    ]:
        env.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_config(env)


def test_sections_reject_bad_values_when_built_directly():
    with pytest.raises(ConfigError, match=r"bad value for 'negatives.k': 'x'"):
        NegativesConfig(k="x")
    with pytest.raises(ConfigError, match=r"unknown key 'encoder.nope'"):
        EncoderConfig(nope=1)
    with pytest.raises(ConfigError, match=r"'tokenizer.codebook_sizes' element \[1\]: 2.5"):
        dataclasses.replace(TokenizerConfig(), codebook_sizes=[4, 2.5])
    assert dataclasses.replace(TokenizerConfig(), epochs=2).epochs == 2
    assert set(EncoderConfig.__dataclass_fields__) >= {"checkpoint", "lora_r"}


def test_to_dict_round_trips_through_yaml(tmp_path):
    cfg = load_config("conf/local.yaml")
    p = tmp_path / "resolved.yaml"
    p.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_config(p) == cfg
    assert cfg.flat()["tokenizer.codebook_sizes"] == cfg.tokenizer.codebook_sizes


def test_replace_validates_and_explain_lists_help():
    cfg = replace(load_config(None), pairs={"s_th": 3})
    assert cfg.pairs.s_th == 3
    with pytest.raises(ConfigError, match="<replace>: invalid value for 'pairs.history_cap'"):
        replace(cfg, pairs={"history_cap": 1})
    text = explain()
    assert "negatives:" in text and "min_near_distance_km" in text and "#" in text
    assert "include:" in text


def test_evaluate_caps_larger_than_the_driver_fail_naming_the_key():
    from lgsid.config import LGSIDConfig, replace
    from lgsid.errors import ConfigError, ValidationError
    from lgsid.evaluate.io import check_caps

    cfg = LGSIDConfig()
    big = dict(n_items=10**8, n_interactions=10**9)
    check_caps(cfg, 384, 2, 2 << 30, **big)  # the default caps fit a 2 GiB driver: 100k x (384 x 4 x 2 + 2048) + 2M x 400 + 100k x 1024 bytes = 1.41 GB
    check_caps(cfg, 384, 2, 1 << 30, n_items=3000, n_interactions=30000)  # a small catalogue fits Spark's 1g default whatever the caps
    with pytest.raises(ValidationError, match=r"^evaluate.max_items=10000000: evaluate would hold about 48\.52 GiB"):
        check_caps(replace(cfg, evaluate={"max_items": 10_000_000}), 384, 2, 2 << 30, **big)
    with pytest.raises(ValidationError, match=r"^evaluate.max_interactions=50000000: .* lower evaluate.max_interactions"):
        check_caps(replace(cfg, evaluate={"max_interactions": 50_000_000}), 384, 2, 2 << 30, **big)
    with pytest.raises(ValidationError, match=r"^evaluate.max_read_users=0: .*up to 2,000,000 users"):  # users: at most the rows read
        check_caps(replace(cfg, evaluate={"max_read_users": 0}), 384, 2, 2 << 30, **big)
    with pytest.raises(ValidationError, match=r"^evaluate.max_items=0: .*10,000,000 items"):  # 0 = no cap: the table's rows count
        check_caps(replace(cfg, evaluate={"max_items": 0}), 384, 2, 2 << 30, n_items=10_000_000, n_interactions=0)
    with pytest.raises(ConfigError, match="'evaluate.max_items': must be >= 0"):
        replace(cfg, evaluate={"max_items": -1})
    with pytest.raises(ConfigError, match="'evaluate.max_read_users': must be >= 0"):
        replace(cfg, evaluate={"max_read_users": -1})
