"""The layering check fails on planted violations (and only on them).

Each test copies the tree's C++ files (what check_includes.py reads) into pytest's tmp_path,
plants one bad include or name, runs the checker as a program and expects exit 1 with one line
naming the file, the line and the rule. Run: /usr/bin/python3 -m pytest tests/layering.
"""
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKER = os.path.join(HERE, "check_includes.py")
REPO = os.path.dirname(os.path.dirname(HERE))

_spec = importlib.util.spec_from_file_location("check_includes", CHECKER)
check_includes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_includes)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One copy of the repository's C++ files (what the checker reads), made once."""
    root = tmp_path_factory.mktemp("pristine") / "repo"
    for rel in check_includes.source_files(REPO):
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.join(REPO, rel), dst)
    return root


@pytest.fixture
def tree(pristine, tmp_path):
    """This test's own copy of the tree, to plant violations in."""
    return shutil.copytree(pristine, tmp_path / "repo")


def run(root):
    done = subprocess.run([sys.executable, CHECKER, str(root)], capture_output=True, text=True)
    return done.returncode, done.stdout.splitlines()


def plant(root, rel, text, after_line=None):
    """Inserts `text` (one line) into root/rel after its last #include (or after_line); returns
    the 1-based line number it lands on."""
    path = root / rel
    lines = path.read_text().split("\n") if path.exists() else []
    if after_line is None:
        includes = [i for i, l in enumerate(lines) if l.startswith("#include")]
        after_line = includes[-1] + 1 if includes else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    lines.insert(after_line, text)
    path.write_text("\n".join(lines))
    return after_line + 1


def test_copy_is_clean(tree):
    assert run(tree) == (0, [])


@pytest.mark.parametrize("rel, include, rule", [
    ("formats/base/status.h", '#include "converters/plan/plan.h"', "upward include"),
    ("formats/torch/torch_file.cc", '#include "ucp/source.h"', "upward include"),
    ("ucp/source.h", '#include "converters/deepspeed/checkpoint_index.h"', "upward include"),
    ("converters/plan/plan.cc", '#include "cli/commands/inspect_command.h"', "upward include"),
    ("formats/safetensors/safetensors_reader.cc", '#include "formats/torch/torch_file.h"',
     "sideways include"),
    ("ucp/source.h", "#include <torch/torch.h>", "forbidden header"),
    ("converters/plan/plan.cc", "#include <ATen/ATen.h>", "forbidden header"),
    ("formats/base/buffer.cc", "#include <cuda_runtime.h>", "forbidden header"),
    ("converters/plan/plan.cc", '#include "pybind11/pybind11.h"', "forbidden header"),
    ("cli/main.cc", "#include <c10/core/Device.h>", "forbidden header"),
    ("formats/base/buffer.cc", "#include THE_HEADER", "computed include"),
])
def test_planted_include_fails(tree, rel, include, rule):
    line = plant(tree, rel, include)
    rc, out = run(tree)
    assert rc == 1
    assert len(out) == 1, out
    assert out[0].startswith(f"{rel}:{line}: {rule}: "), out[0]


def test_relative_include_is_resolved(tree):
    line = plant(tree, "formats/zip/zip_reader.cc", '#include "../../ucp/source.h"')
    rc, out = run(tree)
    assert rc == 1
    assert out == [f"formats/zip/zip_reader.cc:{line}: upward include: formats/zip/ (L1) may not "
                   "include ucp/source.h (ucp/, L2)"]


def test_commented_include_is_ignored(tree):
    plant(tree, "formats/base/buffer.cc", '/* #include "converters/plan/plan.h"\n'
          '   #include <torch/torch.h> */\n'
          '// #include "cli/main.h"')
    assert run(tree) == (0, [])


def test_deepspeed_name_below_l3_fails(tree):
    line = plant(tree, "formats/zip/zip_writer.cc",
                 'static const char* kName = "zero_pp_rank_0_mp_rank_00_optim_states.pt";')
    rc, out = run(tree)
    assert rc == 1
    rules = sorted(l.split(": ")[1] for l in out)
    assert rules == ["DeepSpeed name"] * 3, out  # zero_pp_rank_, mp_rank_, _optim_states
    assert all(l.startswith(f"formats/zip/zip_writer.cc:{line}: DeepSpeed name: ") for l in out)


def test_deepspeed_name_in_tests_and_l3_is_allowed(tree):
    plant(tree, "formats/zip/zip_reader_test.cc", 'const char* kF = "mp_rank_00_model_states.pt";')
    plant(tree, "converters/plan/plan.cc", 'const char* kF = "mp_rank_00_model_states.pt";')
    assert run(tree) == (0, [])


def test_cuda_source_outside_kernels_fails(tree):
    plant(tree, "ucp/scale.cu", "__global__ void Scale() {}", after_line=0)
    rc, out = run(tree)
    assert rc == 1
    assert out == ["ucp/scale.cu:1: CUDA source: ucp/ (L2) may not hold CUDA code"]


def test_cuda_and_torch_allowed_in_runtime(tree):
    plant(tree, "runtime/step.cu", "#include <cuda_runtime.h>", after_line=0)
    plant(tree, "runtime/step.cc", "#include <torch/torch.h>", after_line=0)
    plant(tree, "runtime/step.cc", '#include "converters/plan/plan.h"', after_line=0)
    assert run(tree) == (0, [])


def test_folder_without_layer_fails(tree):
    plant(tree, "sinks/zero_sink.h", "#pragma once", after_line=0)
    plant(tree, "formats/parquet/reader.h", "#pragma once", after_line=0)
    rc, out = run(tree)
    assert rc == 1
    assert sorted(out) == [
        "formats/parquet/reader.h:1: no layer: formats/ is not in the layer table of "
        "tests/layering/check_includes.py",
        "sinks/zero_sink.h:1: no layer: sinks/ is not in the layer table of "
        "tests/layering/check_includes.py"]


def test_formats_deepspeed_sits_below_ucp(tree):
    plant(tree, "formats/deepspeed/keys.h", '#include "formats/torch/pickle_value.h"',
          after_line=0)
    plant(tree, "ucp/source.h", '#include "formats/deepspeed/keys.h"')
    assert run(tree) == (0, [])
    line = plant(tree, "formats/deepspeed/keys.h", '#include "ucp/source.h"', after_line=0)
    rc, out = run(tree)
    assert (rc, len(out)) == (1, 1)
    assert out[0].startswith(f"formats/deepspeed/keys.h:{line}: upward include: ")


def test_stale_allow_list_entry_fails(tree, monkeypatch, capsys):
    allowed = dict(check_includes.TEMPORARY_ALLOWED)
    allowed[("ucp/source.h", "converters/plan/plan.h")] = "fixed already"
    monkeypatch.setattr(check_includes, "TEMPORARY_ALLOWED", allowed)
    assert check_includes.main(["check_includes.py", str(tree)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["tests/layering/check_includes.py: stale allow-list entry: ucp/source.h no "
                   "longer breaks the layers with converters/plan/plan.h; remove it from "
                   "TEMPORARY_ALLOWED"]


def test_allow_list_entry_hides_only_its_violation(tree, monkeypatch, capsys):
    plant(tree, "ucp/source.h", '#include "converters/plan/plan.h"')
    line = plant(tree, "ucp/manifest.h", '#include "converters/plan/plan.h"')
    allowed = dict(check_includes.TEMPORARY_ALLOWED)
    allowed[("ucp/source.h", "converters/plan/plan.h")] = "test"
    monkeypatch.setattr(check_includes, "TEMPORARY_ALLOWED", allowed)
    assert check_includes.main(["check_includes.py", str(tree)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"ucp/manifest.h:{line}: upward include: "), out


def test_usage_error_exits_2(tmp_path):
    done = subprocess.run([sys.executable, CHECKER, "--bogus"], capture_output=True, text=True)
    assert done.returncode == 2
    done = subprocess.run([sys.executable, CHECKER, str(tmp_path / "nope")], capture_output=True,
                          text=True)
    assert done.returncode == 2
