"""Every verb of the real `ucp` binary on hostile inputs built from copies of real fixtures
(issue 16.1-16.3, 16.12): a FIFO named like a shard (or a link to one, or one inside a UCP), a
model-states file from another step or another run, a UCP with a parameter folder missing or
extra, a save folder with `latest_universal` and no `latest`, and `convert` given a UCP.

Each run has a timeout, so a verb that blocks fails its test instead of hanging CI. Every
refusal exits 1 with one `error:` line naming the file (verify: a problem naming it).
"""
import os
import pathlib
import shutil
import subprocess

import pytest

SOURCE = pathlib.Path(os.environ.get("UCP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
UCP = os.environ.get("UCP_BIN", "ucp")
FIXTURES = SOURCE / "fixtures" / "deepspeed"
TIMEOUT = float(os.environ.get("UCP_TEST_TIMEOUT", "60"))  # seconds; every run takes well under one


def run(*args):
    try:
        r = subprocess.run([UCP, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ucp {' '.join(map(str, args))} still running after {TIMEOUT} s (blocked on an input?)")
    return r


def copy_save_folder(case, tmp_path):
    dst = tmp_path / "checkpoint"
    shutil.copytree(FIXTURES / case / "checkpoint", dst)
    return dst


# Every verb that reads a checkpoint, as (name, argv builder). `out` is a fresh path.
def verbs(src, out, other):
    return {
        "inspect": ["inspect", src],
        "verify": ["verify", src],
        "convert": ["convert", src, out, "--no-fsync"],
        "reshard": ["reshard", src, "--dp", "4", "--out", out, "--no-fsync"],
        "export": ["export", src, "--out", out, "--no-fsync"],
        "zero-to-fp32": ["zero-to-fp32", src, out],
        "diff": ["diff", src, other],
    }


def expect_refused(r, *names, verb=""):
    text = r.stdout + r.stderr
    assert r.returncode == 1, f"{verb}: exit {r.returncode}\n{text}"
    for name in names:
        assert name in text, f"{verb}: '{name}' not named in:\n{text}"
    if verb != "verify":
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, f"{verb}: {r.stderr}"


ZERO_VERBS = ["inspect", "verify", "convert", "reshard", "export", "zero-to-fp32", "diff"]


@pytest.mark.parametrize("verb", ZERO_VERBS)
@pytest.mark.parametrize("how", ["fifo", "link_to_fifo"])
def test_a_fifo_named_like_a_shard_is_refused(tmp_path, verb, how):
    save = copy_save_folder("s2_fp32_dp2", tmp_path)
    shard = save / "global_step5" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    shard.unlink()
    if how == "fifo":
        os.mkfifo(shard)
    else:
        fifo = tmp_path / "elsewhere.fifo"
        os.mkfifo(fifo)
        shard.symlink_to(fifo)
    argv = verbs(save, tmp_path / "out", FIXTURES / "s2_fp32_dp2" / "checkpoint" / "global_step5_universal")[verb]
    r = run(*argv)
    expect_refused(r, "zero_pp_rank_1_mp_rank_00_optim_states.pt", "not a regular file", verb=verb)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", ["inspect", "verify", "reshard", "export", "zero-to-fp32", "diff"])
def test_a_fifo_inside_a_ucp_is_refused(tmp_path, verb):
    ucp = tmp_path / "global_step5_universal"
    shutil.copytree(FIXTURES / "s2_fp32_dp2" / "checkpoint" / "global_step5_universal", ucp)
    state = ucp / "zero" / "blocks.0.fc1.weight" / "exp_avg.pt"
    state.unlink()
    os.mkfifo(state)
    argv = verbs(ucp, tmp_path / "out", FIXTURES / "s2_fp32_dp2" / "checkpoint" / "global_step5")[verb]
    r = run(*argv)
    expect_refused(r, "exp_avg.pt", "not a regular file", verb=verb)


def test_a_fifo_given_as_the_path_is_refused(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    for argv in (["inspect", fifo], ["export", fifo, "--out", tmp_path / "out"], ["diff", fifo, fifo]):
        expect_refused(run(*argv), str(fifo), "not a regular file", verb=argv[0])
    latest_dir = copy_save_folder("s2_fp32_dp2", tmp_path)
    (latest_dir / "latest").unlink()
    os.mkfifo(latest_dir / "latest")
    for argv in (["inspect", latest_dir], ["verify", latest_dir], ["convert", latest_dir, tmp_path / "o2"]):
        expect_refused(run(*argv), str(latest_dir / "latest"), verb=argv[0])


# Issue 16.2: model states of another step (s1_fp32_dp4's resume at dp 2, step 8) beside step-5
# ZeRO-1 shards of dp 2; a ZeRO-1 run's model states beside ZeRO-2 shards.
MIXED = {
    "later_step": ("s1_fp32_dp2", FIXTURES / "s1_fp32_dp4" / "resume_dp2" / "checkpoint" / "global_step8",
                   ["global_steps 8", "step 5"]),
    "other_stage": ("s2_fp32_dp2", FIXTURES / "s1_fp32_dp2" / "checkpoint" / "global_step5",
                    ["stage 1", "ZeRO-2"]),
}


@pytest.mark.parametrize("verb", ZERO_VERBS)
@pytest.mark.parametrize("mix", sorted(MIXED))
def test_model_states_of_another_step_or_run_are_refused(tmp_path, verb, mix):
    case, donor, words = MIXED[mix]
    save = copy_save_folder(case, tmp_path)
    shutil.copyfile(donor / "mp_rank_00_model_states.pt", save / "global_step5" / "mp_rank_00_model_states.pt")
    argv = verbs(save, tmp_path / "out", FIXTURES / case / "checkpoint" / "global_step5_universal")[verb]
    r = run(*argv)
    expect_refused(r, "mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt", *words, verb=verb)
    assert not (tmp_path / "out").exists()


# Issue 16.3: a UCP missing a parameter folder, or holding one param_shapes does not declare.
# Every verb refuses it, but diff (16.11), which compares what is there and reports the folder as
# missing on one side, saying what param_shapes declares (exit 1, no error line).
@pytest.mark.parametrize("verb", ["inspect", "export", "zero-to-fp32", "diff", "verify"])
@pytest.mark.parametrize("change", ["missing", "extra"])
def test_an_incomplete_ucp_gives_no_weights(tmp_path, verb, change):
    ucp = tmp_path / "global_step5_universal"
    shutil.copytree(FIXTURES / "s2_fp32_dp2" / "checkpoint" / "global_step5_universal", ucp)
    if change == "missing":
        shutil.rmtree(ucp / "zero" / "blocks.0.fc2.bias")
        words = ["blocks.0.fc2.bias", "no such folder" if verb == "verify" else "missing"]
    else:
        shutil.copytree(ucp / "zero" / "blocks.0.fc2.bias", ucp / "zero" / "blocks.9.extra")
        words = ["blocks.9.extra", "param_shapes"]
    argv = verbs(ucp, tmp_path / "out", FIXTURES / "s2_fp32_dp2" / "checkpoint" / "global_step5")[verb]
    r = run(*argv)
    if verb == "diff":
        assert r.returncode == 1 and r.stderr == "", r.stdout + r.stderr
        assert "missing_in_" in r.stdout and all(w in r.stdout for w in words), r.stdout
    else:
        expect_refused(r, *words, verb=verb)
    assert not (tmp_path / "out").exists()


# Issue 16.12: a save folder with latest_universal and no latest is the UCP for every verb.
def test_latest_universal_without_latest_is_read_as_the_ucp_by_every_verb(tmp_path):
    save = copy_save_folder("s2_fp32_dp2", tmp_path)
    (save / "latest").unlink()
    ucp = save / "global_step5_universal"
    r = run("inspect", save, "--json")
    assert r.returncode == 0, r.stderr
    assert '"kind": "universal"' in r.stdout and str(ucp) in r.stdout
    r = run("verify", save)
    assert r.returncode == 0 and "(universal)" in r.stdout, r.stdout + r.stderr
    r = run("diff", save, ucp)
    assert r.returncode == 0 and "all bitwise equal" in r.stdout, r.stdout + r.stderr
    assert run("export", save, "--out", tmp_path / "e", "--no-fsync").returncode == 0
    assert run("reshard", save, "--dp", "4", "--out", tmp_path / "r", "--no-fsync").returncode == 0
    r = run("convert", save, tmp_path / "c")
    expect_refused(r, "already a Universal Checkpoint", verb="convert")


def test_convert_of_a_ucp_says_it_is_one(tmp_path):
    ucp = FIXTURES / "s2_fp32_dp2" / "checkpoint" / "global_step5_universal"
    r = run("convert", ucp, tmp_path / "out")
    expect_refused(r, str(ucp), "already a Universal Checkpoint", verb="convert")
    r = run("convert", FIXTURES / "s2_fp32_dp2" / "fp32", tmp_path / "out")
    expect_refused(r, "not a DeepSpeed ZeRO checkpoint", verb="convert")
    assert not (tmp_path / "out").exists()
