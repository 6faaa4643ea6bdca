"""The Python package as users install it: an sdist made by `python3 -m build --sdist`, a wheel
built from that sdist with `pip wheel --no-build-isolation` (Debian's setuptools, no package
index) in a fresh venv, installed, then used with torch blocked. One compile covers the sdist's
completeness and the wheel (a cold CI compiles the toolkit once here, not twice); without the
`build` module the wheel is built from the source tree."""
import filecmp
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("UCP_SOURCE_DIR", Path(__file__).resolve().parents[2]))
UCP_BIN = os.environ.get("UCP_BIN")
FIXTURE = ROOT / "fixtures" / "deepspeed" / "s2_fp32_dp2" / "checkpoint"
VERSION = (ROOT / "VERSION").read_text().strip()


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=1800, **kw)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    env_dir = tmp / "venv"
    r = run("/usr/bin/python3", "-m", "venv", "--system-site-packages", env_dir)
    assert r.returncode == 0, r.stderr
    started = time.monotonic()
    source = ROOT
    try:
        import build  # noqa: F401  (python3-build, scripts/install-deps)
        r = run("/usr/bin/python3", "-m", "build", "--sdist", "--no-isolation", "--outdir",
                tmp / "sdist", ROOT)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        sdists = list((tmp / "sdist").glob("ucp-*.tar.gz"))
        assert len(sdists) == 1, list((tmp / "sdist").iterdir())
        source = sdists[0]
    except ImportError:
        pass
    r = run(env_dir / "bin" / "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index",
            "-w", tmp / "dist", source)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    wheels = list((tmp / "dist").glob("ucp-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
    assert {"ucp/__init__.py", "ucp/__init__.pyi", "ucp/py.typed", "ucp/_bin/ucp",
            "ucp/_bin/ucp-convert"} <= names, sorted(names)
    print(f"wheel {wheels[0].name}: {wheels[0].stat().st_size} bytes, "
          f"built in {time.monotonic() - started:.0f} s")
    r = run(env_dir / "bin" / "pip", "install", "--no-index", "--no-deps", wheels[0])
    assert r.returncode == 0, r.stderr
    return env_dir, tmp


def test_console_scripts_and_module_run_the_executables(venv):
    env_dir, _ = venv
    assert run(env_dir / "bin" / "ucp", "--version").stdout.strip() == f"ucp {VERSION}"
    assert run(env_dir / "bin" / "ucp-convert", "--version").stdout.strip() == f"ucp-convert {VERSION}"
    r = run(env_dir / "bin" / "python", "-m", "ucp", "verify", FIXTURE)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    r = run(env_dir / "bin" / "ucp", "frobnicate")  # the executable's own usage error
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


def test_import_without_torch_from_the_installed_package(venv):
    env_dir, _ = venv
    code = ("import sys; sys.modules['torch'] = None\n"
            "import ucp, numpy\n"
            f"c = ucp.open({str(FIXTURE)!r})\n"
            "w = c.tensor('embed.weight')\n"
            "print(ucp.__version__, ucp.__file__, c.kind, c.step, len(c.params), w.shape, w.dtype)")
    r = run(env_dir / "bin" / "python", "-c", code, cwd="/")
    assert r.returncode == 0, r.stderr
    version, path, kind, step, nparams, *_ = r.stdout.split()
    assert version == VERSION
    assert path.startswith(str(env_dir)), path  # the wheel's, not a build tree's
    assert (kind, step, nparams) == ("zero", "5", "18")


@pytest.mark.skipif(not UCP_BIN, reason="UCP_BIN (the build tree's ucp) is set by CTest")
def test_installed_convert_equals_the_build_trees(venv):
    env_dir, tmp = venv
    ours = [tmp / "wheel_ucp", tmp / "tree_ucp"]
    for exe, out in ((env_dir / "bin" / "ucp", ours[0]), (UCP_BIN, ours[1])):
        r = run(exe, "convert", FIXTURE, out, "--no-fsync")
        assert r.returncode == 0, r.stderr
    files = sorted(str(p.relative_to(ours[1])) for p in ours[1].rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(ours[0])) for p in ours[0].rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(ours[0], ours[1], files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files) > 60


@pytest.mark.skipif(not UCP_BIN, reason="UCP_BIN (the build tree's ucp) is set by CTest")
def test_installed_python_verbs_equal_the_cli(venv):
    env_dir, tmp = venv
    py_out, cli_out = tmp / "py_verbs", tmp / "cli_verbs"
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        import ucp
        ck, out = {str(FIXTURE)!r}, {str(py_out)!r}
        ucp.convert(ck, out + "/ucp", fsync=False)
        ucp.reshard(out + "/ucp", out + "/dp4", dp=4, fsync=False)
        ucp.export(out + "/dp4", out + "/weights", max_shard_size="10KB", fsync=False)
        assert ucp.verify(out + "/ucp").ok and ucp.diff(ck, out + "/dp4").equal
        print(len(ucp.load_state_dict(ck)))
    """)
    r = run(env_dir / "bin" / "python", "-c", code, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "18", r.stdout + r.stderr
    for argv in (["convert", FIXTURE, cli_out / "ucp", "--no-fsync"],
                 ["reshard", cli_out / "ucp", "--dp", "4", "--out", cli_out / "dp4", "--no-fsync"],
                 ["export", cli_out / "dp4", "--out", cli_out / "weights", "--max-shard-size", "10KB",
                  "--no-fsync"]):
        done = run(UCP_BIN, *argv)
        assert done.returncode == 0, done.stderr
    for sub in ("ucp", "dp4", "weights"):
        files = sorted(str(p.relative_to(cli_out / sub)) for p in (cli_out / sub).rglob("*")
                       if p.is_file())
        match, mismatch, errors = filecmp.cmpfiles(py_out / sub, cli_out / sub, files, shallow=False)
        assert not mismatch and not errors and len(match) == len(files) > 0, (sub, mismatch, errors)


def test_the_sdist_holds_the_sources_and_no_fixtures(venv):
    _, tmp = venv
    sdists = list((tmp / "sdist").glob("ucp-*.tar.gz"))
    if not sdists:
        pytest.skip("no `build` module: the wheel was built from the source tree")
    import tarfile
    with tarfile.open(sdists[0]) as sdist:
        names = sdist.getnames()
    top = names[0].split("/")[0]
    assert f"{top}/CMakeLists.txt" in names and f"{top}/VERSION" in names
    assert not any(n.startswith((f"{top}/fixtures/", f"{top}/build/")) for n in names)
