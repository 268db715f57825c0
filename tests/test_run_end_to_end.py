"""`kdbench run` end to end on a tiny matrix, resume, and bad input through the command line."""

import json
import os
import subprocess
import sys

import pytest

from kdbench.config import load_config
from kdbench.runner import Runner, expand_cells

pytestmark = pytest.mark.slow

TINY = """
strategies = ["none", "logit"]

[run]
seeds = [0]

[data]
dataset = "synthetic"
image_size = 32
options = {{ n_patients = 5, slices_per_patient = 2 }}

[train]
epochs = 2
batch_size = 4

[[teachers]]
name = "tiny_unet"
model = "unet"
options = {{ base_width = 4, depth = 2 }}

[[students]]
name = "tiny_student"
model = "unet"
options = {{ base_width = 2, depth = 2 }}

[profile]
batch_sizes = [1]
repeats = 2
warmup = 1
export_onnx = {onnx}
"""


def write_matrix(tmp_path, onnx=False, text=TINY):
    path = tmp_path / "matrix.toml"
    path.write_text(text.format(onnx=str(onnx).lower()))
    return path


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kdbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_expand_cells_student_alone_runs_once_per_seed(tmp_path):
    cfg = load_config(write_matrix(tmp_path))

    ids = [c.cell_id for c in expand_cells(cfg)]

    assert ids == [
        "teacher__tiny_unet__s0",
        "-__tiny_student__none__s0",
        "tiny_unet__tiny_student__logit__s0",
    ]


def test_run_writes_cells_leaderboard_and_split(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "run", str(write_matrix(tmp_path, onnx=True)), "--output", str(out), cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    cells = sorted(p.name for p in (out / "cells").glob("*.json"))
    assert len(cells) == 3
    record = json.loads((out / "cells" / "tiny_unet__tiny_student__logit__s0.json").read_text())
    assert record["status"] == "ok"
    assert 0.0 <= record["metrics"]["mean_iou"] <= 1.0
    assert record["teacher_ref"]["sha256"]
    assert record["profile"]["params"]["total"] > 0
    assert (out / "leaderboard.csv").exists()
    assert (out / "leaderboard.md").exists()
    split = json.loads((out / "split.json").read_text())
    assert not set(split["patients"]["train"]) & set(split["patients"]["test"])


def test_run_checkpoint_holds_student_only(tmp_path):
    import torch

    out = tmp_path / "out"
    Runner(load_config(write_matrix(tmp_path)), out).run()

    payload = torch.load(
        out / "checkpoints" / "tiny_unet__tiny_student__logit__s0.pt", weights_only=True
    )
    alone = torch.load(out / "checkpoints" / "-__tiny_student__none__s0.pt", weights_only=True)
    assert payload["state_dict"].keys() == alone["state_dict"].keys()
    assert payload["teacher"]["sha256"]


def test_run_resume_skips_finished_cells(tmp_path):
    cfg = load_config(write_matrix(tmp_path))
    out = tmp_path / "out"
    first = Runner(cfg, out, only=lambda c: c.role == "teacher" or c.strategy.label == "none").run()
    finished = out / "cells" / "-__tiny_student__none__s0.json"
    before = finished.stat().st_mtime_ns

    second = Runner(cfg, out).run()

    assert first.finished == ["teacher__tiny_unet__s0", "-__tiny_student__none__s0"]
    assert second.skipped == first.finished
    assert second.finished == ["tiny_unet__tiny_student__logit__s0"]
    assert finished.stat().st_mtime_ns == before


def test_run_is_deterministic_per_seed(tmp_path):
    import torch

    cfg = load_config(write_matrix(tmp_path))
    only = lambda c: c.role == "student" and c.strategy.label == "none"  # noqa: E731
    Runner(cfg, tmp_path / "a", only=only).run()
    Runner(cfg, tmp_path / "b", only=only).run()

    name = "checkpoints/-__tiny_student__none__s0.pt"
    first = torch.load(tmp_path / "a" / name, weights_only=True)["state_dict"]
    second = torch.load(tmp_path / "b" / name, weights_only=True)["state_dict"]
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_cli_unknown_model_exits_2_and_keeps_results(tmp_path):
    out = tmp_path / "out"
    good = write_matrix(tmp_path)
    assert (
        run_cli("run", str(good), "--output", str(out), "--no-report", cwd=tmp_path).returncode == 0
    )
    kept = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    bad = tmp_path / "bad.toml"
    bad.write_text(
        good.read_text().replace(
            'model = "unet"\noptions = { base_width = 2',
            'model = "unet3"\noptions = { base_width = 2',
        )
    )

    result = run_cli("run", str(bad), "--output", str(out), cwd=tmp_path)

    assert result.returncode == 2
    assert "unknown model 'unet3'" in result.stderr
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")} == kept


def test_cli_malformed_toml_exits_2(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[run\nseeds = [0]\n")

    result = run_cli("run", str(path), cwd=tmp_path)

    assert result.returncode == 2
    assert "broken.toml: invalid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_data_folder_exits_2(tmp_path):
    text = TINY.replace('dataset = "synthetic"', 'dataset = "nifti"').replace(
        "options = {{ n_patients = 5, slices_per_patient = 2 }}", ""
    )
    path = write_matrix(tmp_path, text=text)

    result = run_cli("run", str(path), "--data-root", str(tmp_path / "absent"), cwd=tmp_path)

    assert result.returncode == 2
    assert "absent" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unknown_strategy_exits_2(tmp_path):
    path = write_matrix(tmp_path, text=TINY.replace('"logit"]', '"logits"]'))

    result = run_cli("run", str(path), "--output", str(tmp_path / "o"), cwd=tmp_path)

    assert result.returncode == 2
    assert "logits" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_list_models():
    result = subprocess.run(
        [sys.executable, "-m", "kdbench", "list", "models"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0
    assert result.stdout.split() == ["cfpnet_m", "unet"]


def test_run_adapters_never_reach_student_profile(tmp_path):
    # The feature strategy trains 1x1 adapters (tiny student enc2 has 4 channels, the teacher's 8);
    # the KD cell's checkpoint and profile must equal those of the student trained alone.
    text = TINY.replace(
        'strategies = ["none", "logit"]',
        'strategies = ["none", {{ name = "hint", terms = [{{ kind = "feature", '
        'pairs = [["enc2", "enc2"]] }}] }}]',
    )
    out = tmp_path / "out"
    Runner(load_config(write_matrix(tmp_path, text=text)), out).run()

    alone = json.loads((out / "cells" / "-__tiny_student__none__s0.json").read_text())
    hint = json.loads((out / "cells" / "tiny_unet__tiny_student__hint__s0.json").read_text())
    assert hint["profile"]["params"] == alone["profile"]["params"]
    assert hint["profile"]["macs"]["headline_gmacs"] == alone["profile"]["macs"]["headline_gmacs"]
    hint_bytes = hint["profile"]["sizes"]["state_dict_bytes"]
    assert hint_bytes == alone["profile"]["sizes"]["state_dict_bytes"]


def test_cli_interrupted_run_resumes(tmp_path):
    import signal
    import time

    out = tmp_path / "out"
    matrix = write_matrix(tmp_path)
    args = [
        sys.executable,
        "-m",
        "kdbench",
        "run",
        str(matrix),
        "--output",
        str(out),
        "--no-report",
    ]
    process = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    teacher_file = out / "cells" / "teacher__tiny_unet__s0.json"
    deadline = time.monotonic() + 300
    while not teacher_file.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    teacher_bytes = teacher_file.read_bytes()

    resumed = run_cli("run", str(matrix), "--output", str(out), "--no-report", cwd=tmp_path)

    assert process.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    assert json.loads(teacher_bytes)["status"] == "ok"
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped (already done): 0" not in resumed.stderr
    assert teacher_file.read_bytes() == teacher_bytes
    assert len(list((out / "cells").glob("*.json"))) == 3


def test_run_resumed_equals_uninterrupted(tmp_path):
    import torch

    cfg = load_config(write_matrix(tmp_path))
    Runner(cfg, tmp_path / "full").run()
    only_first_two = lambda c: c.role == "teacher" or c.strategy.label == "none"  # noqa: E731
    Runner(cfg, tmp_path / "resumed", only=only_first_two).run()
    Runner(cfg, tmp_path / "resumed").run()

    name = "checkpoints/tiny_unet__tiny_student__logit__s0.pt"
    full = torch.load(tmp_path / "full" / name, weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "resumed" / name, weights_only=True)["state_dict"]
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_cli_image_size_model_cannot_take_exits_2(tmp_path):
    out = tmp_path / "out"
    path = write_matrix(tmp_path, text=TINY.replace("image_size = 32", "image_size = 30"))

    result = run_cli("run", str(path), "--output", str(out), cwd=tmp_path)

    assert result.returncode == 2
    assert "data.image_size = 30 is not a multiple of 4" in result.stderr
    assert not out.exists()


def test_cli_unknown_key_message_keeps_table_name(tmp_path):
    path = write_matrix(tmp_path, text=TINY.replace("epochs = 2", "epoch = 2"))

    result = run_cli("run", str(path), "--output", str(tmp_path / "o"), cwd=tmp_path)

    assert result.returncode == 2
    assert "Allowed keys in [train]" in result.stderr
