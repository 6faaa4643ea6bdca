"""ucp.convert / reshard / export / verify: the CLI's verbs from Python, equal to the CLI's output,
with progress callbacks, usage errors as ValueError and Ctrl-C removing what was staged."""
import filecmp
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import ucp
from conftest import FIXTURES, SOURCE_DIR

BINARY_DIR = os.environ.get("UCP_BINARY_DIR")
UCP_BIN = os.path.join(BINARY_DIR, "cli", "ucp") if BINARY_DIR else None
CK = FIXTURES / "s2_fp32_dp2" / "checkpoint"


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def same_tree(a, b):
    files = tree(a)
    assert files == tree(b)
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)


@pytest.mark.skipif(UCP_BIN is None, reason="UCP_BINARY_DIR is set by CTest")
@pytest.mark.parametrize("verb", ["convert", "reshard", "export"])
def test_each_verb_equals_the_cli(tmp_path, verb):
    ours, theirs = tmp_path / "py", tmp_path / "cli"
    calls = []
    progress = lambda *a: calls.append(a)  # noqa: E731
    if verb == "convert":
        r = ucp.convert(CK, ours, fsync=False, progress=progress)
        argv = ["convert", CK, theirs, "--no-fsync"]
        assert (r.num_files, r.zero_stage, r.params) == (66, 2, 16)
    elif verb == "reshard":
        r = ucp.reshard(CK, ours, dp=4, fsync=False, progress=progress)
        argv = ["reshard", CK, "--dp", "4", "--out", theirs, "--no-fsync"]
        assert (r.tag, r.dp, r.tp, r.ep, r.zero_stage) == ("global_step5", 4, 1, 1, 2)
    else:
        r = ucp.export(CK, ours, max_shard_size="10KB", fsync=False, progress=progress)
        argv = ["export", CK, "--out", theirs, "--max-shard-size", "10KB", "--no-fsync"]
        assert r.num_tensors == 18 and r.step == 5 and len(r.files) == 7
    assert r.bytes > 0 and r.seconds >= 0 and str(r.output) == str(ours)
    assert calls and calls[-1][0] == calls[-1][1], calls  # the last call: everything done
    done = subprocess.run([UCP_BIN] + [str(a) for a in argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    same_tree(ours, theirs)


def test_verify_and_its_document(tmp_path):
    r = ucp.verify(CK)
    assert r.ok is True and r.kind == "zero" and r.problems == []
    assert r.as_dict()["params_checked"] == 17


def test_usage_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="target dp 1000000"):
        ucp.reshard(CK, tmp_path / "x", dp=1000000)
    with pytest.raises(ValueError, match="dtype"):
        ucp.export(CK, tmp_path / "y", dtype="int8")
    with pytest.raises(ValueError, match="max_shard_size"):
        ucp.export(CK, tmp_path / "z", max_shard_size="lots")
    assert not any(tmp_path.iterdir())


def test_a_progress_callback_that_raises_stops_the_run(tmp_path, monkeypatch):
    def boom(*_):
        raise RuntimeError("stop here")
    monkeypatch.setenv("UCP_TEST_PAUSE_AFTER_OPS", "3")  # the run waits mid-write until cancelled
    with pytest.raises(RuntimeError, match="stop here"):
        ucp.convert(CK, tmp_path / "out", fsync=False, progress=boom)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ucp-")] == []


def test_ctrl_c_raises_keyboard_interrupt_and_leaves_nothing(tmp_path):
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        import ucp
        try:
            ucp.convert({str(CK)!r}, {str(tmp_path / "out")!r}, threads=1, fsync=False)
        except KeyboardInterrupt:
            print("interrupted")
    """)
    env = dict(os.environ, UCP_TEST_PAUSE_AFTER_OPS="3", UCP_TEST_PAUSE_READY=str(ready))
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and out.strip() == "interrupted", out + err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ucp-")] == []
