"""Matrix-file parsing: typed results and errors that name the file, key and value."""

import pytest

from kdbench.config import load_config
from kdbench.errors import ConfigError

MINIMAL = """
strategies = ["none", "logit"]

[data]
dataset = "synthetic"
image_size = 32

[[teachers]]
name = "big"
model = "unet"
options = { base_width = 4, depth = 2 }

[[students]]
model = "cfpnet_m"
"""


def write(tmp_path, text):
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


def test_load_config_embedded_default():
    cfg = load_config(None)

    assert cfg.source == "<embedded default>"
    assert [s.label for s in cfg.strategies] == ["none", "logit"]
    assert cfg.teachers[0].model == "unet"


def test_load_config_string_strategies_become_terms(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))

    assert cfg.strategies[0].terms == ()
    assert cfg.strategies[1].terms == ({"kind": "logit", "weight": 1.0},)
    assert cfg.students[0].label == "cfpnet_m"


def test_load_config_malformed_toml_names_file(tmp_path):
    path = write(tmp_path, "[data\nimage_size = 3")

    with pytest.raises(ConfigError, match=r"matrix.toml: invalid TOML"):
        load_config(path)


def test_load_config_missing_file_names_path(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: matrix file not found"):
        load_config(tmp_path / "nope.toml")


def test_load_config_unknown_key_named(tmp_path):
    path = write(tmp_path, "[train]\nepoch = 3\n[[students]]\nmodel = 'cfpnet_m'\n")

    with pytest.raises(ConfigError, match=r"unknown key 'train.epoch'"):
        load_config(path)


def test_load_config_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, "[train]\nepochs = 'ten'\n[[students]]\nmodel = 'cfpnet_m'\n")

    with pytest.raises(ConfigError, match=r"'train.epochs': 'ten'"):
        load_config(path)


def test_load_config_split_must_sum_to_one(tmp_path):
    path = write(
        tmp_path,
        "[data]\nsplit = { train = 0.5, val = 0.2, test = 0.2 }\n"
        "[[students]]\nmodel = 'cfpnet_m'\n",
    )

    with pytest.raises(ConfigError, match="sum to 1"):
        load_config(path)


def test_load_config_kd_without_teacher_rejected(tmp_path):
    path = write(tmp_path, "strategies = ['logit']\n[[students]]\nmodel = 'cfpnet_m'\n")

    with pytest.raises(ConfigError, match="needs at least one"):
        load_config(path)


def test_load_config_duplicate_student_names_rejected(tmp_path):
    path = write(tmp_path, "[[students]]\nmodel = 'cfpnet_m'\n[[students]]\nmodel = 'cfpnet_m'\n")

    with pytest.raises(ConfigError, match="distinct name"):
        load_config(path)


def test_load_config_model_train_overrides_merge(tmp_path):
    text = MINIMAL.replace(
        "options = { base_width = 4, depth = 2 }",
        "options = { base_width = 4, depth = 2 }\ntrain = { epochs = 7 }",
    )
    text = text.replace("[data]", "[train]\nepochs = 3\nbatch_size = 5\n\n[data]")
    cfg = load_config(write(tmp_path, text))

    assert cfg.teachers[0].train.epochs == 7
    assert cfg.teachers[0].train.batch_size == 5


def test_load_config_relative_root_resolves_next_to_file(tmp_path):
    text = MINIMAL.replace(
        'dataset = "synthetic"', 'dataset = "nifti"\noptions = { root = "data" }'
    )
    cfg = load_config(write(tmp_path, text))

    assert cfg.data.options["root"] == str(tmp_path / "data")


def test_load_config_data_root_argument_wins(tmp_path):
    text = MINIMAL.replace(
        'dataset = "synthetic"', 'dataset = "nifti"\noptions = { root = "data" }'
    )
    cfg = load_config(write(tmp_path, text), data_root=str(tmp_path / "elsewhere"))

    assert cfg.data.options["root"] == str(tmp_path / "elsewhere")


def test_load_config_augment_with_teacher_cache_rejected(tmp_path):
    text = MINIMAL.replace("[data]", "[train]\naugment = true\n\n[data]")

    with pytest.raises(ConfigError, match="train.augment"):
        load_config(write(tmp_path, text))


def test_load_config_augment_allowed_without_cache(tmp_path):
    text = MINIMAL.replace(
        "[data]", "[run]\nteacher_cache = 'off'\n\n[train]\naugment = true\n\n[data]"
    )

    assert load_config(write(tmp_path, text)).train.augment is True
