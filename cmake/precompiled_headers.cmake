# Precompiled headers (UCP_PCH, default ON): the std / Abseil / nlohmann::json headers that nearly
# every translation unit parses (about half of a cold compile's CPU time,
# docs/benchmarks/build_cpu2c_202612.md) are parsed once per build tree into ucp_pch, and once more
# with gtest/gmock into ucp_test_pch; every ucp_library reuses ucp_pch and every ucp_test
# ucp_test_pch. A PCH is only valid for the flags it was built with, so ucp_test_pch is an (empty)
# executable compiled like the tests (-fPIE, UCP_TEST_OPTIMIZE). ucp_executable targets (one main
# file each, mostly small tools) use none: a third PCH would cost more than it saves.
# The headers are force-included, so a missing #include can hide behind them: the asan preset
# builds with UCP_PCH=OFF, so CI still compiles every file on its own includes.
option(UCP_PCH "Precompile the common std/Abseil/nlohmann (and gtest) headers" ON)

set(UCP_PCH_HEADERS
  <algorithm> <cstdint> <cstring> <filesystem> <fstream> <functional> <map> <memory> <optional>
  <sstream> <string> <utility> <vector>
  <absl/container/flat_hash_map.h> <absl/container/flat_hash_set.h> <absl/status/status.h>
  <absl/status/statusor.h> <absl/strings/str_cat.h> <absl/strings/str_format.h>
  <absl/strings/string_view.h> <absl/types/span.h> <nlohmann/json.hpp>)

# ucp_pch_target(name [EXECUTABLE] DEPS ... HEADERS ...): a target that only builds the PCH, an
# object library or (EXECUTABLE, for -fPIE) an empty program.
function(ucp_pch_target name)
  cmake_parse_arguments(A "EXECUTABLE" "" "DEPS;HEADERS" ${ARGN})
  set(source ${CMAKE_BINARY_DIR}/${name}.cc)
  if(NOT EXISTS ${source})
    file(WRITE ${source} "// Generated: ${name} exists to build its precompiled header.\n"
                         "int main() { return 0; }\n")
  endif()
  if(A_EXECUTABLE)
    add_executable(${name} ${source})
  else()
    add_library(${name} OBJECT ${source})
  endif()
  target_compile_options(${name} PRIVATE ${UCP_WARNINGS})
  target_link_libraries(${name} PRIVATE ${A_DEPS})
  target_precompile_headers(${name} PRIVATE ${A_HEADERS})
endfunction()

if(UCP_PCH)
  ucp_pch_target(ucp_pch
    DEPS absl::status absl::statusor absl::strings absl::str_format absl::span
         absl::flat_hash_map absl::flat_hash_set nlohmann_json::nlohmann_json
    HEADERS ${UCP_PCH_HEADERS})
  ucp_pch_target(ucp_test_pch EXECUTABLE
    DEPS absl::status absl::statusor absl::strings absl::str_format absl::span
         absl::flat_hash_map absl::flat_hash_set nlohmann_json::nlohmann_json
         GTest::gtest GTest::gmock
    HEADERS ${UCP_PCH_HEADERS} <gtest/gtest.h> <gmock/gmock.h>)
  target_compile_options(ucp_test_pch PRIVATE ${UCP_TEST_OPTIMIZE})
endif()

# ucp_use_pch(target pch_target): `target` compiles with pch_target's precompiled header.
function(ucp_use_pch target pch)
  if(UCP_PCH)
    target_precompile_headers(${target} REUSE_FROM ${pch})
  endif()
endfunction()
