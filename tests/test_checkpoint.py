"""The checkpoint helper every resumable loop uses: keyed, owned by one process, written atomically, and failing
with one line that names the directory (issue 23 items 4-6)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmscalpel.checkpoint import (LOCK_FILE, CheckpointError, CheckpointInUse, file_identity, files_identity,
                                  key_changes, open_checkpoint, tensor_identity)

from conftest import REPO_ROOT

HOLDER = """
import sys, time
from lmscalpel.checkpoint import open_checkpoint
with open_checkpoint(sys.argv[1], {"lr": 0.1}, what="toy_model"):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A directory this process may not create files in (root ignores permissions: a sysfs directory then)."""
    if os.geteuid() != 0:
        path = tmp_path / "read-only"
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    path = Path("/sys/kernel")
    if not path.is_dir() or os.access(path, os.W_OK) and _can_create(path):
        pytest.skip("no directory here refuses new files to root")
    yield path


def _can_create(path: Path) -> bool:
    try:
        (path / ".lmscalpel-probe").touch()
    except OSError:
        return False
    (path / ".lmscalpel-probe").unlink()
    return True


def test_same_key_keeps_the_state_and_another_key_empties_the_directory_saying_why(tmp_path, caplog):
    with open_checkpoint(tmp_path / "ck", {"cfg": {"lr": 0.1, "checkpoint_every": 5}, "seed": 0}, what="x") as ck:
        ck.save_state({"step": 3, "w": torch.ones(2)})
    with open_checkpoint(tmp_path / "ck", {"cfg": {"lr": 0.1, "checkpoint_every": 7}, "seed": 0}, what="x") as ck:
        assert ck.load_state()["step"] == 3  # how often state is saved is not part of the key
    with caplog.at_level(logging.WARNING), \
            open_checkpoint(tmp_path / "ck", {"cfg": {"lr": 0.5}, "seed": 0}, what="x") as ck:
        assert ck.load_state() is None
    assert "cfg.lr: 0.1 -> 0.5" in caplog.text and "starting from scratch" in caplog.text
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [LOCK_FILE, "key.json"]


def test_a_child_is_keyed_on_its_own_and_emptied_with_its_parent(tmp_path):
    with open_checkpoint(tmp_path, {"model": "a"}, what="x") as ck:
        ck.child("one", {"latent": 1}).write_json("piece.json", [1])
        ck.child("two", {"latent": 2}).write_json("piece.json", [2])
    with open_checkpoint(tmp_path, {"model": "a"}, what="x") as ck:
        assert ck.child("one", {"latent": 1}).exists("piece.json")
        assert not ck.child("two", {"latent": 3}).exists("piece.json")
    with open_checkpoint(tmp_path, {"model": "b"}, what="x") as ck:
        assert not (tmp_path / "one").exists()


def test_a_directory_of_an_older_format_is_started_over(tmp_path):
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "trainer.pt").write_bytes(b"old")
    with open_checkpoint(tmp_path, {"a": 1}, what="x") as ck:
        assert ck.load_state() is None and not (tmp_path / "last").exists()


def test_key_changes_name_the_dotted_entries():
    assert key_changes({"a": {"b": 1, "c": [1]}, "d": "x"}, {"a": {"b": 2, "c": [1]}, "e": 1}) == [
        "a.b: 1 -> 2", "d: \"x\" -> null", "e: null -> 1"]


def test_a_second_process_is_refused_while_the_owner_lives_and_a_dead_owner_does_not_block(tmp_path):
    """Issue 23 item 5: an orphan of a killed Snakemake still writes the checkpoint the rerun would resume from."""
    directory = tmp_path / "checkpoints" / "run" / "model" / "toy-llama"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(CheckpointInUse) as refused:
            with open_checkpoint(directory, {"lr": 0.1}, what="toy_model"):
                pytest.fail("two owners")
        message = str(refused.value)
        assert message == (f"{directory} (toy_model) is in use by PID {holder.pid} on host {socket.gethostname()} "
                           "(a job still running, e.g. an orphan of a killed Snakemake): wait for it or kill it")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (directory / LOCK_FILE).read_text().split()[0] == str(holder.pid)  # what the kill -9 left behind
    with open_checkpoint(directory, {"lr": 0.1}, what="toy_model"):
        assert (directory / LOCK_FILE).read_text() == f"{os.getpid()} {socket.gethostname()}\n"


def test_an_unwritable_directory_fails_with_one_line_naming_it(unwritable_dir):
    """Issue 23 item 6: torch said '[enforce fail at inline_container.cc] ... Permission denied', without a path."""
    with pytest.raises(CheckpointError) as failed:
        with open_checkpoint(unwritable_dir / "sae", {}, what="sae.train"):
            pass
    assert str(failed.value).startswith(f"{unwritable_dir / 'sae'}: checkpoint of sae.train is not writable (")
    with pytest.raises(CheckpointError, match=f"^{unwritable_dir}: checkpoint of sae.train is not writable"):
        with open_checkpoint(unwritable_dir, {}, what="sae.train"):
            pass


def test_a_state_that_cannot_be_read_or_written_fails_with_one_line_naming_the_file(tmp_path):
    with open_checkpoint(tmp_path, {}, what="toy_model") as ck:
        ck.save_state({"step": 1})
        (tmp_path / "state.pt").write_bytes(b"PK\x03\x04 truncated")
        with pytest.raises(CheckpointError) as unreadable:
            ck.load_state()
        (tmp_path / "blocked.pt").mkdir()
        (tmp_path / "blocked.pt" / "x").touch()
        with pytest.raises(CheckpointError) as unwritable:
            with ck.writing("blocked.pt/x/state.pt") as tmp:
                torch.save({}, tmp)
    for err, path, doing in ((unreadable, tmp_path / "state.pt", "read"),
                             (unwritable, tmp_path / "blocked.pt/x/state.pt", "written")):
        message = str(err.value)
        assert message.startswith(f"{path}: checkpoint of toy_model cannot be {doing} (") and "\n" not in message


def test_files_identity_is_the_content_of_a_local_directory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"a")
    (tmp_path / "training_summary.json").write_text("{}")
    first = files_identity(tmp_path)
    assert list(first) == ["model.safetensors"] and files_identity("org/hub-model") is None
    (tmp_path / "model.safetensors").write_bytes(b"b")
    assert files_identity(tmp_path) != first
    assert file_identity(tmp_path / "model.safetensors") == files_identity(tmp_path)["model.safetensors"]


def test_tensor_identity_is_its_dtype_shape_and_values():
    x = torch.arange(6, dtype=torch.bfloat16)
    assert tensor_identity(x) == tensor_identity(x.clone()) != tensor_identity(x.float())
    assert tensor_identity(x) != tensor_identity(x.view(2, 3)) and tensor_identity(x) != tensor_identity(x + 1)
