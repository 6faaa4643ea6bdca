"""The `ucp` and `ucp-convert` console scripts of the wheel: they replace this Python process with
the C++ executables installed beside the package (ucp/_bin), so flags, output, exit codes and
Ctrl-C handling are the executables' own."""
import os
import sys
from pathlib import Path


def _executable(name):
    here = Path(__file__).resolve().parent
    # The wheel's copy; else the CMake build tree this package was assembled in (<build>/python/ucp
    # beside <build>/cli), for PYTHONPATH=<build>/python.
    for exe in (here / "_bin" / name, here.parent.parent / "cli" / name):
        if exe.is_file():
            return exe
    return None


def _exec(name):
    exe = _executable(name)
    if exe is None:
        sys.stderr.write(f"error: the {name} executable is not beside this ucp package; install "
                         "it as a wheel (pip install --no-build-isolation .)\n")
        return 1
    os.execv(str(exe), [name] + sys.argv[1:])


def main():
    return _exec("ucp")


def convert_main():
    return _exec("ucp-convert")
