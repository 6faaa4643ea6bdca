// `ucp`: the command-line front end. This is the only translation unit that includes CLI11 (it
// is slow to compile); each verb parses its flags here and calls a Run* function from commands/.
// Exit codes: 0 ok, 1 failure (one "error: ..." line on stderr), 2 usage error.
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "cli/commands/inspect_command.h"

namespace {

constexpr const char* kDescription =
    "ucp: Universal Checkpoint toolkit for DeepSpeed/ZeRO checkpoints.\n"
    "\n"
    "Examples:\n"
    "  ucp inspect mp_rank_00_model_states.pt           value tree, tensors as dtype + shape\n"
    "  ucp inspect --values 4 model.safetensors         plus the first 4 elements of each tensor\n"
    "  ucp inspect --json zero_pp_rank_0_mp_rank_00_optim_states.pt | jq .tree\n"
    "  ucp inspect --verify shard.pt                    read every record, check CRC-32 and sizes\n";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "ucp"};
  app.set_version_flag("--version", "ucp 0.1.0");
  app.require_subcommand(1);
  app.footer("Run 'ucp <command> --help' for a command's options.");

  ucp::cli::InspectOptions inspect;
  CLI::App* inspect_cmd = app.add_subcommand(
      "inspect",
      "Show what is inside one file: a torch.save .pt/.bin (DeepSpeed model states, optimizer shards, UCP "
      "files), a .safetensors file or an HDF5 file. The format is detected from the file's bytes.");
  inspect_cmd->add_option("FILE", inspect.path, "file to inspect")->required();
  inspect_cmd->add_option("--values", inspect.values, "show the first N elements of every tensor")
      ->check(CLI::NonNegativeNumber);
  inspect_cmd->add_flag("--json", inspect.json, "print one JSON document (the value tree in ucp's lossless encoding)");
  inspect_cmd->add_flag("--verify", inspect.verify,
                        "read every record and tensor; check CRC-32s (zip) and sizes; exit 1 on the first problem");
  inspect_cmd->add_option("--max-items", inspect.max_items, "entries shown per container in the text view (0 = all)")
      ->check(CLI::NonNegativeNumber);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*inspect_cmd) return ucp::cli::RunInspect(inspect, std::cout, std::cerr);
  return 2;
}
