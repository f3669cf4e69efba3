"""Every YAML the package reads refuses aliases (billion laughs) at once, in one line naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from surround_depth_ros.base.yaml_file import YamlFileError, load_yaml, parse_yaml
from surround_depth_ros.sensors.rig import RigFileError, load_rig
from surround_depth_ros.tools.cli import main
from surround_depth_ros.training.ablation import load_ablation_config
from surround_depth_ros.training.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
# Nine levels of nine aliases: 9^9 (387 million) strings once expanded; PyYAML's safe_load returns it at once as
# shared references, and whatever walks it next (validation, a copy, printing) never finishes.
LAUGHS = 'lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]\n" for i in range(1, 9)
)


def _bomb(path: Path, key: str) -> Path:
    """A billion-laughs document under `key` (the first alias is on line 4, column 16)."""
    body = "".join(f"  {line}\n" for line in LAUGHS.splitlines())
    path.write_text(f"# a file of this package's kind\n{key}:\n{body}")
    return path


def test_an_alias_is_refused_where_it_stands():
    with pytest.raises(YamlFileError) as info:
        parse_yaml(LAUGHS, "laughs.yaml")
    assert str(info.value).startswith("laughs.yaml, line 2, column 14: the alias *lol0 is refused")
    assert "\n" not in str(info.value)
    with pytest.raises(YamlFileError, match=r"line 3, column 7: the alias \*defaults is refused"):
        parse_yaml("defaults: &defaults {a: 1}\nnode:\n  <<: *defaults\n", "params.yaml")


def test_plain_documents_read_as_safe_load_reads_them():
    for path in [ROOT / "config" / "surround_depth.param.yaml", ROOT / "config" / "rig_nuscenes.yaml"]:
        assert load_yaml(path) == yaml.safe_load(path.read_text())
    assert parse_yaml("anchored: &unused 3\n", "x") == {"anchored": 3}  # an anchor alone expands nothing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1, 2", "t.yaml, line 1, column 9: not valid YAML: while parsing a flow sequence: expected ','"),
        (
            "x: !!python/object:os.system 1",
            "t.yaml, line 1, column 4: not valid YAML: could not determine a constructor",
        ),
        ("[" * 5000 + "]" * 5000, "t.yaml: not valid YAML: nested too deeply to read"),
    ],
)
def test_other_bad_documents_are_one_line_errors(text, message):
    with pytest.raises(YamlFileError) as info:
        parse_yaml(text, "t.yaml")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_each_reader_refuses_a_billion_laughs(tmp_path):
    rig = _bomb(tmp_path / "rig.yaml", "cameras")
    with pytest.raises(RigFileError, match=rf"^{rig}, line 4, column 16: the alias \*lol0 is refused"):
        load_rig(rig)
    training = _bomb(tmp_path / "train.yaml", "model")
    with pytest.raises(ConfigError, match=rf"^{training}, line 4, column 16: the alias \*lol0 is refused"):
        load_config(training)
    ablation = _bomb(tmp_path / "ablation.yaml", "variants")
    with pytest.raises(ConfigError, match=rf"^{ablation}, line 4, column 16: the alias \*lol0 is refused"):
        load_ablation_config(ablation)


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["rig", "--rig", "{bomb}"], "cameras"),
        (["train", "{bomb}"], "model"),
        (["ablation", "{bomb}"], "variants"),
    ],
)
def test_commands_exit_2_with_one_line_on_a_billion_laughs(tmp_path, capsys, argv, key):
    bomb = _bomb(tmp_path / "bomb.yaml", key)
    assert main([arg.format(bomb=bomb) for arg in argv]) == 2
    message = f"surround-depth {argv[0]}: error: {bomb}, line 4, column 16: the alias *lol0 is refused"
    error = capsys.readouterr().err
    assert error.startswith(message) and error.count("\n") == 1


def test_an_alias_in_a_set_override_is_a_usage_error(capsys):
    argv = ["train", str(ROOT / "config" / "training" / "synthetic_default.yaml"), "--set", "seed=[&x 1, *x]"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("surround-depth train: error: --set seed, line 1, column 8: the alias *x is refused")
