#!/usr/bin/env python3
"""Layering check: every #include of the C++ tree against the arrows of docs/architecture.md.

Usage: check_includes.py [ROOT]    (ROOT defaults to the repository this script lives in)

Walks ROOT's C++ files (*.h *.cc *.cu *.cuh ...; skips .git, fixtures/ and any CMake build tree),
maps each file to its unit (LAYERS), and reports, one line each, as `file:line: rule: detail`:
  * upward include      a unit includes a unit of a higher layer (ucp/ -> converters/);
  * sideways include    a unit includes another unit of its own layer that EDGES does not allow
                        (formats/safetensors -> formats/torch);
  * forbidden header    torch/c10/ATen/CUDA/pybind11 outside the units that may use them
                        (THIRD_PARTY_ALLOWED: runtime/ for torch, kernels/ and runtime/ for CUDA,
                        python/ for pybind11);
  * include not in the edge table   a downward include EDGES does not list (kernels/ -> ucp/);
  * CUDA source         a .cu/.cuh file outside kernels/ and runtime/;
  * DeepSpeed name      a string literal spelling a DeepSpeed ZeRO file or key name in L0-L2
                        outside formats/deepspeed (DEEPSPEED_NAMES; tests exempt);
  * no layer            a C++ file in a folder that LAYERS does not place (new folders must be
                        given a layer here and in docs/architecture.md);
  * computed include    `#include MACRO`, which cannot be checked.
Exit status: 0 clean, 1 violations (or a stale TEMPORARY_ALLOWED entry), 2 usage error.
The table below is the one statement of the allowed edges; docs/architecture.md shows it.
"""
import os
import re
import sys

# ---- The layer table --------------------------------------------------------------------------
# unit (a folder, longest prefix wins) -> layer. Layers are ordered; a unit may include units of a
# lower layer when EDGES lists them, never a higher one.
LAYERS = {
    "formats/base": "L0",
    "formats/zip": "L1",
    "formats/torch": "L1",
    "formats/safetensors": "L1",
    "formats/hdf5": "L1",
    "formats/deepspeed": "L1",
    "formats": "L1",  # files directly in formats/: the format registry (registry.h, Sniff)
    "ucp": "L2",
    "converters": "L3",  # converters/* sub-folders are one unit: L3 is not layered inside
    "kernels": "K",
    "runtime": "L4",
    "cli": "L5",
    "python": "L5",
    "tests": "T",  # cross-layer tests, benchmarks and fuzz drivers
    "bench": "T",
    "fuzz": "T",
}
LAYER_ORDER = ["L0", "L1", "L2", "L3", "K", "L4", "L5", "T"]

_L0 = {"formats/base"}
_L1 = {u for u, layer in LAYERS.items() if layer == "L1"}
_L0_L3 = _L0 | _L1 | {"ucp", "converters"}

# unit -> the other units it may include. Anything not listed is a violation.
EDGES = {
    "formats/base": set(),
    "formats/zip": _L0,
    "formats/torch": _L0 | {"formats/zip"},  # torch.save files are zip containers
    "formats/safetensors": _L0,
    "formats/hdf5": _L0,
    "formats/deepspeed": _L0 | {"formats/torch"},  # DeepSpeed's pickled trees are torch Values
    "formats": _L0 | {"formats/zip", "formats/torch", "formats/safetensors", "formats/hdf5"},
    "ucp": _L0 | _L1,
    "converters": _L0 | _L1 | {"ucp"},
    "kernels": set(),  # CUDA only, POD parameters
    "runtime": _L0_L3 | {"kernels"},
    "cli": _L0_L3,
    "python": _L0_L3,
    "tests": _L0_L3 | {"cli", "kernels"},
    "bench": _L0_L3 | {"cli", "kernels"},
    "fuzz": _L0_L3,
}

# Third-party headers that only some units may include (<...> or "..." alike).
THIRD_PARTY = {
    "torch": re.compile(r"^(torch|c10|ATen|caffe2)/"),
    "CUDA": re.compile(r"^(cuda|cublas|cudnn|curand|cusparse|cusolver|cufft|nccl|nvtx|"
                       r"nvToolsExt|cooperative_groups|cub/|thrust/)"),
    "pybind11": re.compile(r"^(pybind11/|Python\.h$)"),
}
THIRD_PARTY_ALLOWED = {
    "runtime": {"torch", "CUDA"},
    "kernels": {"CUDA"},
    "python": {"pybind11"},
}
CUDA_SOURCE_UNITS = {"kernels", "runtime"}

# Units that hold only the files directly in them (a new formats/<fmt>/ needs its own row).
DIRECT_ONLY = {"formats"}

# DeepSpeed's ZeRO file-name parts and optimizer-shard keys (deepspeed-formats.md §1.2, §2.2):
# names live with their format, so string literals spelling them are errors below L3 outside
# formats/deepspeed ("names in the wrong layer", STYLE.md). Tests are exempt: they name fixtures.
DEEPSPEED_NAMES = re.compile(
    r"zero_pp_rank_|expp_rank_|mp_rank_|_optim_states|_model_states|optimizer_state_dict|"
    r"base_optimizer_state|single_partition_of_fp32_groups|param_slice_mappings|fp32_flat_groups|"
    r"group_paddings|partition_count|zero_stage|ds_autoep_layers")
DEEPSPEED_NAMES_FORBIDDEN = {u for u, layer in LAYERS.items()
                             if layer in ("L0", "L1", "L2") and u != "formats/deepspeed"}
TEST_SUFFIXES = ("_test.cc", "_testutil.h", "_testutil.cc", "_fuzz.cc")

# ---- TEMPORARY allow-list --------------------------------------------------------------------
# (file, included path or DeepSpeed name) -> why, for a violation that is being fixed. An entry
# that no longer matches a violation is itself an error, so this list can only shrink. Empty since
# DeepSpeed's names moved to formats/deepspeed (issue 15).
TEMPORARY_ALLOWED = {}
# ---------------------------------------------------------------------------------------------

SOURCE_EXTENSIONS = (".h", ".hh", ".hpp", ".cc", ".cpp", ".cxx", ".cu", ".cuh")
SKIP_TOP = {"fixtures", "build"}  # data, not code; the default build folder
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*(?:"([^"]+)"|<([^>]+)>|(\S.*))')


def unit_of(rel_path):
    """The LAYERS unit holding repository path `rel_path`, or None."""
    parts = rel_path.split("/")
    for n in range(len(parts) - 1, 0, -1):
        prefix = "/".join(parts[:n])
        if prefix in LAYERS:
            direct = n == len(parts) - 1
            return prefix if direct or prefix not in DIRECT_ONLY else None
    return None


def source_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or d == "__pycache__":
                continue
            if rel_dir == "." and d in SKIP_TOP:
                continue
            if os.path.exists(os.path.join(dirpath, d, "CMakeCache.txt")):
                continue  # a CMake build tree (build/release, ...)
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            if f.endswith(SOURCE_EXTENSIONS):
                yield os.path.normpath(os.path.join(rel_dir, f)).replace(os.sep, "/")


_TOKEN_RE = re.compile(
    r"//[^\n]*"  # line comment
    r"|/\*.*?(?:\*/|\Z)"  # block comment
    r'|R"([^(\s"]{0,16})\((.*?)\)\1"'  # raw string: groups 1 (delimiter), 2 (contents)
    r'|"((?:\\.|[^"\\\n])*)"'  # string: group 3
    r"|'(?:\\.|[^'\\\n])*'",  # character (or digit separators: harmless)
    re.DOTALL)


def scan(text):
    """Splits C++ source into code lines with comments blanked (line numbers kept) and the string
    literals found in code, as (line number, contents). Handles escapes and raw strings."""
    code, literals, pos, line = [], [], 0, 1
    for m in _TOKEN_RE.finditer(text):
        code.append(text[pos:m.start()])
        line += text.count("\n", pos, m.start())
        token = m.group(0)
        if token.startswith("/"):
            code.append("\n" * token.count("\n"))  # a comment
        else:
            code.append(token)
            if m.group(2) is not None or m.group(3) is not None:
                literals.append((line, m.group(2) if m.group(2) is not None else m.group(3)))
        line += token.count("\n")
        pos = m.end()
    code.append(text[pos:])
    return "".join(code).split("\n"), literals


def includes(root, rel_path, lines):
    """Yields (line number, include text, repository path or None, is_computed)."""
    here = os.path.dirname(rel_path)
    for number, line in enumerate(lines, 1):
        m = INCLUDE_RE.match(line)
        if not m:
            continue
        quoted, angled, computed = m.groups()
        if computed is not None:
            yield number, computed.strip(), None, True
            continue
        name = quoted if quoted is not None else angled
        repo_path = None
        if quoted is not None:
            beside = os.path.normpath(os.path.join(here, name)).replace(os.sep, "/")
            if os.path.isfile(os.path.join(root, beside)):
                repo_path = beside  # relative to the including file
            elif not name.startswith(".") and unit_of(name) is not None:
                repo_path = os.path.normpath(name).replace(os.sep, "/")
        yield number, name, repo_path, False


def check_include(unit, name, repo_path):
    """The (rule, detail) an include of `name` from `unit` breaks, or None."""
    for group, pattern in THIRD_PARTY.items():
        if pattern.match(name) and group not in THIRD_PARTY_ALLOWED.get(unit, set()):
            return ("forbidden header",
                    f"{unit}/ ({LAYERS[unit]}) may not include {group} headers (<{name}>)")
    if repo_path is None:
        return None
    target = unit_of(repo_path)
    if target is None or target == unit or target in EDGES[unit]:
        return None
    src_rank = LAYER_ORDER.index(LAYERS[unit])
    dst_rank = LAYER_ORDER.index(LAYERS[target])
    rule = "upward include" if dst_rank > src_rank else (
        "sideways include" if dst_rank == src_rank else "include not in the edge table")
    return (rule, f"{unit}/ ({LAYERS[unit]}) may not include {repo_path} "
                  f"({target}/, {LAYERS[target]})")


def check_file(root, rel_path):
    """Yields (line, rule, detail, included repo path or None) for one file."""
    unit = unit_of(rel_path)
    if unit is None:
        top = rel_path.split("/")[0]
        yield 1, "no layer", (f"{top}/ is not in the layer table of "
                              "tests/layering/check_includes.py"), None
        return
    if rel_path.endswith((".cu", ".cuh")) and unit not in CUDA_SOURCE_UNITS:
        yield 1, "CUDA source", f"{unit}/ ({LAYERS[unit]}) may not hold CUDA code", None
    with open(os.path.join(root, rel_path), encoding="utf-8", errors="replace") as f:
        lines, literals = scan(f.read())
    for number, name, repo_path, computed in includes(root, rel_path, lines):
        if computed:
            yield number, "computed include", f"#include {name} cannot be checked", None
            continue
        broken = check_include(unit, name, repo_path)
        if broken:
            yield number, broken[0], broken[1], repo_path or name
    if unit in DEEPSPEED_NAMES_FORBIDDEN and not rel_path.endswith(TEST_SUFFIXES):
        for number, literal in literals:
            for name in sorted(set(DEEPSPEED_NAMES.findall(literal))):
                yield number, "DeepSpeed name", (
                    f'{unit}/ ({LAYERS[unit]}) spells "{name}"; DeepSpeed file and key names live '
                    "in formats/deepspeed (today formats/deepspeed/deepspeed_keys.h)"), name


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        print(__doc__.strip().split("\n")[2], file=sys.stderr)
        return 2
    root = argv[1] if len(argv) == 2 else os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isdir(root):
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 2
    violations, allowed_seen, allowed, files = [], set(), 0, 0
    for rel_path in source_files(root):
        files += 1
        for number, rule, detail, included in check_file(root, rel_path):
            if (rel_path, included) in TEMPORARY_ALLOWED:
                allowed_seen.add((rel_path, included))
                allowed += 1
                continue
            violations.append(f"{rel_path}:{number}: {rule}: {detail}")
    for key in sorted(set(TEMPORARY_ALLOWED) - allowed_seen):
        violations.append(f"tests/layering/check_includes.py: stale allow-list entry: {key[0]} "
                          f"no longer breaks the layers with {key[1]}; remove it from "
                          "TEMPORARY_ALLOWED")
    for line in violations:
        print(line)
    summary = (f"{files} files checked, {len(violations)} layering violations, "
               f"{allowed} temporarily allowed (TEMPORARY_ALLOWED)")
    print(summary, file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
