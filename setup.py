"""Builds the ucp wheel's compiled parts with this repository's CMake project.

setuptools calls build_ext; CMakeBuild configures the `release` settings in a build folder of its
own (UCP_WHEEL_BUILD_DIR, default build/wheel), builds the Python extension and the two
executables, and puts them in the package: ucp/_ucp*.so and ucp/_bin/{ucp,ucp-convert}.
Everything else (name, version, entry points) is in pyproject.toml.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = Path(os.environ.get("UCP_WHEEL_BUILD_DIR", ROOT / "build" / "wheel"))
        build_dir.mkdir(parents=True, exist_ok=True)
        configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
                     "-DCMAKE_BUILD_TYPE=Release", f"-DUCP_PYTHON={sys.executable}",
                     "-DUCP_BUILD_RUNTIME=OFF"]  # the wheel bundles the toolkit, not ucp-train
        # As the CMake presets do: ccache hits across build folders (a `make` build's objects).
        env = dict(os.environ, CCACHE_BASEDIR=str(ROOT), CCACHE_NOHASHDIR="1")
        subprocess.run(configure, check=True, stdout=subprocess.DEVNULL, env=env)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs, "--target",
                        "ucp_python_module", "ucp", "ucp-convert"], check=True, env=env)
        built = list((build_dir / "python" / "ucp").glob("_ucp*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one _ucp*.so in {build_dir / 'python' / 'ucp'}, found {built}")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[0], target)
        bin_dir = target.parent / "_bin"
        bin_dir.mkdir(exist_ok=True)
        for exe in ("ucp", "ucp-convert"):
            shutil.copy2(build_dir / "cli" / exe, bin_dir / exe)


setup(ext_modules=[CMakeExtension("ucp._ucp")], cmdclass={"build_ext": CMakeBuild})
