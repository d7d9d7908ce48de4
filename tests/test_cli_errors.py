"""Every user error of the ``stlm`` command is one message with exit status 2, never a traceback; an interrupted
training says where it stopped and how to continue (exit status 130)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stlm_core.cli import main
from stlm_core.runs import CHECKPOINT_FILE, is_finished, run_lock

FAST = ["--profile", "smoke", "--quiet", "--threads", "1"]
TRAIN = [*FAST, "--image-size", "64", "--epochs", "1", "--batch-size", "2"]


# ------------------------------------------------------------------------------------------------------ helpers


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    """(exit status, stderr) of ``stlm argv``; argparse errors arrive as SystemExit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_user_error(code: int, err: str, *needles: str) -> None:
    """Exit status 2, one ``error:`` message naming every needle, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err and "error" in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def unwritable_out(tmp_path: Path) -> Path:
    """An output path that cannot be created: inside a read-only folder, or (as root, where the permission bits do
    not stop writes) under a regular file."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not os.access(locked, os.W_OK):
        return locked / "run"
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n")
    return blocker / "run"


def train_args(root: Path, out: Path, *extra: str) -> list:
    return ["train", "--dataset", "mvtec", "--root", root, "--category", "widget", *TRAIN, "--out", out, *extra]


@pytest.fixture
def tiny_root(mvtec_tree) -> Path:
    return mvtec_tree(category="widget", n_train=4, n_good=2, defects={"scratch": 2}, size=48)


@pytest.fixture
def trained_run(tmp_path, tiny_root, capsys) -> Path:
    """A finished one-epoch smoke run."""
    run = tmp_path / "trained"
    assert main([str(a) for a in train_args(tiny_root, run)]) == 0
    capsys.readouterr()
    return run


# ----------------------------------------------------------------------------------------- unwritable output


def test_train_into_unwritable_folder_fails_before_any_work(tmp_path, tiny_root, capsys):
    out = unwritable_out(tmp_path)
    before = files_under(tmp_path)
    code, err = run_cli(capsys, train_args(tiny_root, out))
    assert_user_error(code, err, str(out.parent), "writable")
    assert files_under(tmp_path) == before


def test_zeroshot_into_unwritable_folder_fails_before_any_work(tmp_path, tiny_root, capsys):
    out = unwritable_out(tmp_path)
    before = files_under(tmp_path)
    code, err = run_cli(capsys, ["zeroshot", "--dataset", "mvtec", "--root", tiny_root, "--category", "widget",
                                 *FAST, "--limit", "2", "--out", out])
    assert_user_error(code, err, str(out.parent), "writable")
    assert files_under(tmp_path) == before


def test_adapters_into_unwritable_folder_fails_before_any_work(tmp_path, tiny_root, capsys):
    out = unwritable_out(tmp_path) / "adapters.pt"
    before = files_under(tmp_path)
    code, err = run_cli(capsys, ["zeroshot-adapters", "train", "--dataset", "mvtec", "--root", tiny_root,
                                 "--profile", "smoke", "--quiet", "--threads", "1", "--epochs", "1", "--out", out])
    assert_user_error(code, err, str(out.parent.parent), "writable")
    assert files_under(tmp_path) == before


# ------------------------------------------------------------------------------------------ damaged checkpoints


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"], ids=["empty", "truncated"])
def test_evaluate_with_damaged_checkpoint(trained_run, capsys, content):
    ckpt = trained_run / CHECKPOINT_FILE
    ckpt.write_bytes(content)
    code, err = run_cli(capsys, ["evaluate", "--run", trained_run, "--quiet", "--threads", "1"])
    assert_user_error(code, err, str(ckpt), "--force")


def test_resume_with_truncated_checkpoint(trained_run, tiny_root, capsys):
    ckpt = trained_run / CHECKPOINT_FILE
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    code, err = run_cli(capsys, train_args(tiny_root, trained_run, "--resume"))
    assert_user_error(code, err, str(ckpt), "--force")


# ------------------------------------------------------------------------------------------- not an STLM run


def test_evaluate_a_clipsam_run(tmp_path, tiny_root, capsys):
    run = tmp_path / "clipsam"
    assert main([str(a) for a in ["zeroshot", "--dataset", "mvtec", "--root", tiny_root, "--category", "widget",
                                  *FAST, "--limit", "2", "--out", run]]) == 0
    capsys.readouterr()
    code, err = run_cli(capsys, ["evaluate", "--run", run, "--quiet", "--threads", "1"])
    assert_user_error(code, err, str(run), "clipsam run", "stlm zeroshot")


def test_evaluate_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    code, err = run_cli(capsys, ["evaluate", "--run", folder, "--quiet"])
    assert_user_error(code, err, str(folder), "config.json", "stlm train")


# ------------------------------------------------------------------------------------------- option values


@pytest.mark.parametrize("option,value", [("--batch-size", "0"), ("--epochs", "0"), ("--limit", "-3"),
                                          ("--limit", "0"), ("--threads", "0"), ("--steps", "0")])
def test_train_rejects_non_positive_numbers(tmp_path, option, value, capsys):
    code, err = run_cli(capsys, ["train", "--dataset", "mvtec", "--root", tmp_path, "--category", "widget",
                                 option, value])
    assert_user_error(code, err, option, "positive integer")


# ------------------------------------------------------------------------------------------------- data


def test_bad_test_files_stop_train_before_writing(tmp_path, mvtec_tree, capsys):
    root = mvtec_tree(category="widget", n_train=4, n_good=2, defects={"scratch": 2}, size=48)
    mask = root / "widget" / "ground_truth" / "scratch" / "001_mask.png"
    from PIL import Image

    Image.new("L", (20, 20)).save(mask)
    image = root / "widget" / "test" / "good" / "000.png"
    image.write_bytes(image.read_bytes()[:60])
    out = tmp_path / "run"
    start = time.perf_counter()
    code, err = run_cli(capsys, train_args(root, out))
    assert time.perf_counter() - start < 30
    assert_user_error(code, err, str(mask), str(image), "2 problems", "nothing was written")
    assert not out.exists()


def test_missing_synthetic_root_suggests_generating_it(tmp_path, capsys):
    root = tmp_path / "synthetic"
    code, err = run_cli(capsys, ["train", "--dataset", "synthetic", "--root", root, "--category", "carpet_like",
                                 *TRAIN, "--out", tmp_path / "run"])
    assert_user_error(code, err, f"stlm data synthetic {root}")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ locking


def test_second_writer_of_a_run_is_refused(trained_run, tiny_root, capsys):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir()}
    with run_lock(trained_run):
        code, err = run_cli(capsys, train_args(tiny_root, trained_run, "--force"))
    assert_user_error(code, err, str(trained_run), f"process {os.getpid()}", "Wait for it to finish")
    assert {p.name: p.read_bytes() for p in trained_run.iterdir()} == before


# ----------------------------------------------------------------------------------------------- interrupts


def test_interrupted_training_says_how_to_resume(tmp_path, tiny_root, capsys, monkeypatch):
    import torch

    from stlm_core.stlm import training

    focal, calls = training.focal_loss, []

    def interrupt_on_third_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first step of the second epoch (2 steps per epoch)
            raise KeyboardInterrupt
        return focal(*args, **kwargs)

    monkeypatch.setattr(training, "focal_loss", interrupt_on_third_call)
    run = tmp_path / "run"
    argv = train_args(tiny_root, run)
    argv[argv.index("--epochs") + 1] = "2"
    code, err = run_cli(capsys, argv)
    assert code == 130 and "Traceback" not in err
    assert "epoch 1/2" in err and "step 2" in err, err
    assert f"stlm train --resume --out {run}" in err, err
    assert not is_finished(run)

    monkeypatch.setattr(training, "focal_loss", focal)
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--threads", "1"]) == 0
    assert is_finished(run)
    state = torch.load(run / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and state["resumed_from"] == {"epoch": 1, "step": 2}


def test_interrupt_before_the_first_epoch_says_nothing_was_saved(tmp_path, tiny_root, capsys, monkeypatch):
    from stlm_core.stlm import training

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "focal_loss", interrupt)
    run = tmp_path / "run"
    code, err = run_cli(capsys, train_args(tiny_root, run))
    assert code == 130 and "Traceback" not in err
    assert "no epoch" in err and f"stlm train --resume --out {run}" in err, err


def test_resume_without_a_run_record_names_the_missing_options(tmp_path, capsys):
    code, err = run_cli(capsys, ["train", "--resume", "--out", tmp_path / "nothing", "--quiet"])
    assert_user_error(code, err, "--dataset", str(tmp_path / "nothing"))


def test_train_without_data_options_names_them(tmp_path, capsys):
    code, err = run_cli(capsys, ["train", "--out", tmp_path / "run", "--quiet"])
    assert_user_error(code, err, "--dataset, --root, --category", "--resume --out RUN")


def test_resume_from_the_record_refuses_changed_settings(trained_run, capsys):
    code, err = run_cli(capsys, ["train", "--resume", "--out", trained_run, "--epochs", "3", "--quiet"])
    assert_user_error(code, err, "--epochs", "recorded settings", str(trained_run))


def test_force_from_the_record_retrains_a_damaged_run(trained_run, capsys):
    (trained_run / CHECKPOINT_FILE).write_bytes(b"")
    assert main(["train", "--force", "--out", str(trained_run), "--quiet", "--threads", "1"]) == 0
    assert is_finished(trained_run)


# ------------------------------------------------------------------------------------------ escaped OS errors


def test_permission_error_from_a_handler_is_a_message(monkeypatch, capsys):
    from stlm_core.metrics import benchmark

    def denied(**kwargs):
        raise PermissionError(13, "Permission denied", "/data/locked/maps.npz")

    monkeypatch.setattr(benchmark, "bench_metrics", denied)
    code, err = run_cli(capsys, ["bench", "metrics", "--quiet"])
    assert_user_error(code, err, "/data/locked/maps.npz", "permissions")


def test_plain_interrupt_exits_130(monkeypatch, capsys):
    from stlm_core.metrics import benchmark

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark, "bench_metrics", interrupted)
    code, err = run_cli(capsys, ["bench", "metrics", "--quiet"])
    assert code == 130 and "interrupted" in err and "Traceback" not in err
