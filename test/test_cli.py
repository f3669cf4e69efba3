"""`surround-depth`: usage errors are one line on stderr and exit code 2; write-bag opens every registered source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sample_framesets import make_framesets

from surround_depth_ros.bag import RosbagReader, write_bag
from surround_depth_ros.tools.cli import main

ENTRY_POINT = Path(sys.executable).with_name("surround-depth")


def test_the_installed_command_reports_a_usage_error_in_one_line(tmp_path):
    if not ENTRY_POINT.is_file():
        pytest.skip(f"{ENTRY_POINT} is not installed (the package is not installed in this environment)")
    result = subprocess.run(
        [str(ENTRY_POINT), "write-bag", "--source", "nuscenes", "--out", str(tmp_path / "bag")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == "surround-depth write-bag: error: --source nuscenes needs --dataroot\n"
    assert not (tmp_path / "bag").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["synth", "--frames", "0", "--out", "{tmp}/synth"],
            "surround-depth synth: error: --frames must be >= 1, got 0",
        ),
        (
            ["train", "{tmp}/absent.yaml"],
            "surround-depth train: error: training config {tmp}/absent.yaml does not exist",
        ),
        (["rig", "--rig", "{tmp}/absent.yaml"], "surround-depth rig: error: rig file {tmp}/absent.yaml does not exist"),
        (
            ["replay", "{tmp}/absent"],
            "surround-depth replay: error: {tmp}/absent is not a rosbag2 directory (no metadata.yaml in it)",
        ),
        (
            ["write-bag", "--source", "ddad", "--dataroot", "{tmp}/absent", "--out", "{tmp}/bag"],
            "surround-depth write-bag: error: DGP file {tmp}/absent does not exist",
        ),
        (
            ["evaluate", "--checkpoint", "{tmp}", "--dataset", "synthetic", "--out", "{tmp}/out"],
            "surround-depth evaluate: error: checkpoint {tmp} is a directory, not a checkpoint file",
        ),
        (
            ["write-bag", "--frames", "1", "--out", "{tmp}"],
            "surround-depth write-bag: error: bag {tmp} exists already; choose a new path or delete it",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    code = main([arg.format(tmp=tmp_path) for arg in argv])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == message.format(tmp=tmp_path) + "\n"


def test_evaluate_names_a_fifo_checkpoint_without_opening_it(tmp_path, capsys):
    os.mkfifo(tmp_path / "student.pt")
    argv = ["evaluate", "--checkpoint", tmp_path / "student.pt", "--dataset", "synthetic", "--out", tmp_path / "out"]
    assert main([str(arg) for arg in argv]) == 2
    message = f"checkpoint {tmp_path}/student.pt is not a regular file (a FIFO, device or socket)"
    assert capsys.readouterr().err == f"surround-depth evaluate: error: {message}\n"


def test_write_bag_rewrites_a_bag_through_the_source_registry(tmp_path, capsys):
    write_bag(make_framesets(3), tmp_path / "mcap", progress=False)
    argv = ["write-bag", "--source", "rosbag", "--dataroot", str(tmp_path / "mcap"), "--out", str(tmp_path / "sqlite")]
    assert main([*argv, "--storage", "sqlite3", "--frames", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert [frame.name for frame in RosbagReader(tmp_path / "sqlite")] == ["sqlite:0", "sqlite:1"]


@pytest.mark.parametrize("command", ["run-bag", "evaluate", "write-bag", "replay"])
def test_a_bag_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path, capsys, command):
    """metadata.yaml of version 99: what rosbags raises is the one line every bag command prints (issue 23)."""
    from ros_harness import tiny_checkpoint

    bag, out = tmp_path / "bag", tmp_path / "out"
    frames = make_framesets(1)
    write_bag(frames, bag, progress=False)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 99}\n")
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", frames[0].rig)
    argv = {
        "run-bag": ["run-bag", str(bag), "--out", str(out)],
        "evaluate": ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "rosbag", "--path", str(bag)],
        "write-bag": ["write-bag", "--source", "rosbag", "--dataroot", str(bag), "--out", str(out)],
        "replay": ["replay", str(bag)],
    }[command]
    assert main(argv + (["--out", str(out)] if command == "evaluate" else [])) == 2
    message = f"surround-depth {command}: error: {bag}: cannot open the bag: Rosbag2 version 99 not supported"
    assert capsys.readouterr().err.startswith(message) and not out.exists()


def test_evaluate_names_a_file_that_is_no_checkpoint_in_one_line(tmp_path, capsys):
    (tmp_path / "student.pt").write_bytes(b"not a checkpoint")
    argv = ["evaluate", "--checkpoint", str(tmp_path / "student.pt"), "--dataset", "synthetic", "--out", str(tmp_path)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"surround-depth evaluate: error: checkpoint {tmp_path}/student.pt is corrupt")
    assert error.count("\n") == 1
