// `ucp`: the command-line front end. This is the only translation unit that includes CLI11 (it
// is slow to compile); each verb parses its flags here and calls a Run* function from commands/.
// Exit codes: 0 ok, 1 failure (one "error: ..." line on stderr), 2 usage error.
// Built twice: as `ucp`, and as `ucp-convert` (UCP_CLI_CONVERT_ALIAS), the drop-in for DeepSpeed's
// ds_to_universal.py that takes its flags; a binary named ucp-convert behaves as the alias too.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "cli/commands/checkpoint_commands.h"
#include "cli/commands/command_output.h"
#include "cli/commands/convert_command.h"
#include "cli/commands/export_command.h"
#include "cli/commands/inspect_command.h"
#include "cli/commands/interrupt.h"
#include "cli/commands/launch_ranks.h"
#include "cli/commands/option_checks.h"
#include "cli/commands/reshard_command.h"
#include "cli/commands/train_dispatch.h"
#include "cli/commands/verify_command.h"

namespace {

constexpr const char* kDescription =
    "ucp: Universal Checkpoint toolkit for DeepSpeed/ZeRO checkpoints.\n"
    "\n"
    "Examples:\n"
    "  ucp inspect mp_rank_00_model_states.pt           value tree, tensors as dtype + shape\n"
    "  ucp inspect --values 4 model.safetensors         plus the first 4 elements of each tensor\n"
    "  ucp inspect --json zero_pp_rank_0_mp_rank_00_optim_states.pt | jq .tree\n"
    "  ucp inspect --verify shard.pt                    read every record, check CRC-32 and sizes\n"
    "  ucp convert ckpt/ ckpt/global_step5_universal    ZeRO checkpoint -> Universal Checkpoint\n"
    "  ucp convert --dry-run --json ckpt/global_step5   the plan only\n"
    "  ucp reshard ckpt/global_step5_universal --dp 8 --out ckpt8   UCP or ZeRO -> ZeRO at dp 8\n"
    "  ucp verify ckpt/global_step5_universal           check every file; name every problem\n"
    "  ucp inspect ckpt/                                a checkpoint: kind, topology, parameters\n"
    "  ucp diff ckpt/global_step5 ckpt/global_step5_universal   equal tensors? (any two kinds)\n"
    "  ucp train --nproc 4 --config ds.json ...         train with ZeRO (ucp train --help)\n";

#ifdef UCP_CLI_CONVERT_ALIAS
constexpr bool kConvertAlias = true;
#else
constexpr bool kConvertAlias = false;
#endif

// CLI11 validators over the checks of commands/option_checks.h (one per kind of value).
CLI::Validator Check(std::string (*check)(const std::string&)) {
  return CLI::Validator([check](std::string& value) { return check(value); }, "");
}
CLI::Validator PositiveInt() { return Check(ucp::cli::CheckPositiveInt); }
CLI::Validator NonNegativeInt() { return Check(ucp::cli::CheckNonNegativeInt); }
CLI::Validator NonNegativeFloat() { return Check(ucp::cli::CheckNonNegativeFloat); }
CLI::Validator ByteSize() { return Check(ucp::cli::CheckByteSize); }
CLI::Validator FolderName() { return Check(ucp::cli::CheckFolderName); }
CLI::Validator OneOf(absl::Span<const absl::string_view> list) {
  std::vector<absl::string_view> choices(list.begin(), list.end());
  return CLI::Validator(
      [choices](std::string& value) { return ucp::cli::CheckOneOf(value, choices); }, "");
}

bool WantsJson(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json") return true;
  }
  return false;
}

// A parse error: --help / --version print and exit 0; anything else is one "error:" line naming
// the verb's help, exit 2 (and {"error": ...} on stdout under --json).
int ParseFailed(const CLI::App& app, const CLI::ParseError& e, bool json) {
  if (e.get_exit_code() == 0) return app.exit(e);
  std::string command = app.get_name();
  for (const CLI::App* sub : app.get_subcommands()) command = sub->get_name();
  const std::string help = command == app.get_name() ? command : app.get_name() + " " + command;
  const int code =
      ucp::cli::Fail({std::cout, std::cerr, command, json}, e.what(), ucp::cli::kExitUsage);
  std::cerr << "Run '" << help << " --help' for its options.\n";
  return code;
}

// --distributed and --nproc of the verbs that write (docs/distributed.md).
void AddDistributedOptions(CLI::App* cmd, bool& distributed, int& nproc) {
  cmd->add_flag("--distributed", distributed,
                "run as one rank of a job: ranks from torchrun, srun or mpirun, or --nproc; the "
                "output is the same bytes as one process writes (docs/distributed.md)");
  cmd->add_option("--nproc", nproc,
                  "start N local ranks of this command (127.0.0.1, a free port; implies "
                  "--distributed); Ctrl-C stops them all; a failed rank is named")
      ->check(PositiveInt());
}

// Options shared by `ucp convert` and `ucp-convert`; `alias` adds ds_to_universal's spellings.
void AddConvertOptions(CLI::App* cmd, ucp::cli::ConvertCommandOptions& o, bool alias) {
  if (alias) {
    cmd->add_option("--input_folder", o.input,
                    "DeepSpeed checkpoint: the tag folder (or its save folder)")
        ->required();
    cmd->add_option("--output_folder", o.output, "Universal Checkpoint folder to create")
        ->required();
  } else {
    // INPUT or --input_folder (required, checked after parsing), OUTPUT or --output_folder: people
    // migrating from ds_to_universal.py type its flags here too.
    CLI::Option* input = cmd->add_option(
        "INPUT", o.input,
        "DeepSpeed checkpoint: a save folder (its `latest` names the tag) or a tag folder");
    cmd->add_option("--input_folder,--input-folder", o.input,
                    "same as INPUT (ds_to_universal.py's flag)")
        ->excludes(input);
    CLI::Option* output = cmd->add_option(
        "OUTPUT", o.output,
        "Universal Checkpoint folder to create (default: <save folder>/<tag>_universal)");
    cmd->add_option("--output_folder,--output-folder", o.output,
                    "same as OUTPUT (ds_to_universal.py's flag)")
        ->excludes(output);
  }
  cmd->add_option("--tag", o.tag, "tag folder to convert instead of the one `latest` names")
      ->check(FolderName());
  cmd->add_option("--threads", o.threads,
                  "copy threads (default: --num_extract_workers, else all cores)")
      ->check(PositiveInt());
  cmd->add_option("--memory-limit,--memory_limit", o.memory_limit,
                  "bytes of copy buffers in flight, e.g. 256MiB (the default), 1G")
      ->check(ByteSize());
  cmd->add_flag("--dry-run,--dry_run", o.dry_run,
                "print the plan (what would be written) and write nothing");
  cmd->add_flag("--json", o.json, "print the plan (--dry-run) or the result as JSON");
  cmd->add_flag("--force", o.force, "replace an existing output folder");
  cmd->add_flag("--no_strict,--no-strict", o.no_strict,
                "allow universal_checkpoint_info patterns that match no parameter (as "
                "ds_to_universal --no_strict)");
  cmd->add_flag(
      "--inject_missing_state,--inject-missing-state", o.inject_missing_state,
      "ZeRO-1/2 without universal_checkpoint_info: assume {'universal_checkpoint_version': 0.4}");
  cmd->add_option("--num_extract_workers", o.num_extract_workers,
                  "ds_to_universal compatibility: used as --threads")
      ->check(NonNegativeInt());
  cmd->add_option("--num_merge_workers", o.num_merge_workers,
                  "ds_to_universal compatibility: ignored")
      ->check(NonNegativeInt());
  cmd->add_flag("--keep_temp_folder", o.keep_temp_folder,
                "ds_to_universal compatibility: no effect (ucp writes no temporary folder)");
  cmd->add_flag("--no-fsync", o.no_fsync, "skip fsync (scratch output)");
  AddDistributedOptions(cmd, o.distributed, o.nproc);
}

int ConvertAliasMain(int argc, char** argv) {
  CLI::App app{
      "ucp-convert: DeepSpeed ZeRO checkpoint -> Universal Checkpoint, with ds_to_universal.py's "
      "flags.",
      "ucp-convert"};
  app.set_version_flag("--version", "ucp-convert " UCP_VERSION);
  ucp::cli::ConvertCommandOptions convert;
  AddConvertOptions(&app, convert, /*alias=*/true);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return ParseFailed(app, e, WantsJson(argc, argv));
  }
  if (convert.nproc > 0 && !convert.dry_run) {
    return ucp::cli::LaunchRanks(convert.nproc, "ucp-convert", argc, argv, std::cerr);
  }
  convert.progress = ::isatty(STDERR_FILENO) == 1;
  if (!convert.dry_run) ucp::cli::InstallInterruptHandlers();
  return ucp::cli::RunConvert(convert, std::cout, std::cerr);
}

bool InvokedAsAlias(const char* argv0) {
  const std::string name = argv0 == nullptr ? "" : argv0;
  const size_t slash = name.rfind('/');
  return name.substr(slash == std::string::npos ? 0 : slash + 1) == "ucp-convert";
}

// `ucp inspect`: its subcommand and options, parsed into the options object given.
CLI::App* AddInspect(CLI::App& app, ucp::cli::InspectOptions& inspect,
                     ucp::cli::InspectCheckpointOptions& inspect_dir) {
  CLI::App* inspect_cmd =
      app.add_subcommand("inspect",
                         "Show what is inside one file (a torch.save .pt/.bin, a .safetensors or "
                         "an HDF5 file; the format is detected from its bytes) or a whole "
                         "checkpoint folder (ZeRO save/tag folder, Universal Checkpoint, weights "
                         "export: kind, topology, step, param groups, parameter table, sizes).");
  inspect_cmd
      ->add_option("PATH", inspect.path,
                   "a file (its value tree), or a checkpoint folder: DeepSpeed ZeRO save/tag "
                   "folder, Universal Checkpoint folder or weights export (kind, stage, topology, "
                   "step, param groups, parameter table, sizes)")
      ->required();
  inspect_cmd
      ->add_option("--tag", inspect_dir.tag,
                   "folder: the ZeRO tag to read instead of the one `latest` names")
      ->check(FolderName());
  inspect_cmd->add_flag(
      "--universal", inspect_dir.universal,
      "folder: a save folder with both `latest` and `latest_universal`: read the UCP");
  inspect_cmd
      ->add_option("--max-rows", inspect_dir.max_rows, "folder: parameter rows shown (0 = all)")
      ->check(NonNegativeInt());
  inspect_cmd->add_option("--values", inspect.values, "show the first N elements of every tensor")
      ->check(NonNegativeInt());
  inspect_cmd->add_flag("--json", inspect.json,
                        "print one JSON document (the value tree in ucp's lossless encoding)");
  inspect_cmd->add_flag("--verify", inspect.verify,
                        "read every record and tensor; print each zip record's size and CRC-32 and "
                        "whether it matches; exit 1 if any does not");
  inspect_cmd
      ->add_option(
          "--max-items", inspect.max_items,
          "entries shown per container, and --verify records listed, in the text view (0 = all)")
      ->check(NonNegativeInt());
  return inspect_cmd;
}

// `ucp convert`: its subcommand and options, parsed into the options object given.
CLI::App* AddConvert(CLI::App& app, ucp::cli::ConvertCommandOptions& convert) {
  CLI::App* convert_cmd =
      app.add_subcommand("convert",
                         "Convert a DeepSpeed ZeRO-0/1/2/3 checkpoint (fp32, bf16, BF16_Optimizer, "
                         "AutoEP, native MoE; tp > 1 at ZeRO-1/2) into the Universal Checkpoint "
                         "folder DeepSpeed's ds_to_universal.py writes (which refuses ZeRO-0 and "
                         "native MoE), streaming fragments into the final files with bounded "
                         "memory. Nothing appears at OUTPUT unless the conversion completes.");
  AddConvertOptions(convert_cmd, convert, /*alias=*/false);
  return convert_cmd;
}

// `ucp diff`: its subcommand and options, parsed into the options object given.
CLI::App* AddDiff(CLI::App& app, ucp::cli::DiffCommandOptions& diff) {
  CLI::App* diff_cmd = app.add_subcommand(
      "diff",
      "Compare two checkpoints of any kinds (ZeRO folder, Universal Checkpoint, "
      "safetensors/bin/HDF5 export) parameter by parameter and state by state (fp32, exp_avg, "
      "exp_avg_sq, step): bitwise equal, max abs difference, missing on one side. A weights-only "
      "side compares fp32 only. Exit 0 only if everything compared is equal (within --atol).");
  diff_cmd->add_option("A", diff.a, "first checkpoint")->required();
  diff_cmd->add_option("B", diff.b, "second checkpoint")->required();
  diff_cmd->add_option("--atol", diff.atol, "absolute tolerance (default 0: bitwise)")
      ->check(NonNegativeFloat());
  diff_cmd
      ->add_option("--states", diff.states,
                   "states to compare, e.g. fp32,exp_avg (default: all three)")
      ->delimiter(',')
      ->check(OneOf(ucp::cli::DiffStateNames()));
  diff_cmd->add_option("--tag-a", diff.tag_a, "ZeRO tag of A instead of `latest`")
      ->check(FolderName());
  diff_cmd->add_option("--tag-b", diff.tag_b, "ZeRO tag of B instead of `latest`")
      ->check(FolderName());
  diff_cmd->add_flag("--all", diff.all, "list equal entries too");
  diff_cmd->add_flag("--summary", diff.summary,
                     "print the header and the counts only, no entry lines");
  diff_cmd->add_flag("--json", diff.json, "print the report as one JSON document");
  return diff_cmd;
}

// `ucp reshard`: its subcommand and options, parsed into the options object given.
CLI::App* AddReshard(CLI::App& app, ucp::cli::ReshardCommandOptions& reshard) {
  CLI::App* reshard_cmd = app.add_subcommand(
      "reshard",
      "Write the DeepSpeed ZeRO checkpoint (OUT/latest, OUT/<tag>/) that DeepSpeed saves after "
      "loading SRC at another data-parallel size / AutoEP autoep_size / ZeRO stage (1 <-> 2). SRC "
      "is a Universal Checkpoint folder or a ZeRO save/tag folder (read directly). Infeasible "
      "targets are refused before anything is written.\n\nExamples:\n"
      "  ucp reshard ckpt/global_step5_universal --dp 2 --out dp2   # UCP -> ZeRO at dp 2\n"
      "  ucp reshard ckpt --dp 8 --autoep-size 4 --out ep4         # ZeRO folder, new EP size\n"
      "  ucp reshard ckpt --dp 4 --zero-stage 1 --out zero1        # ZeRO-2 -> ZeRO-1\n"
      "  ucp reshard ckpt/global_step5_universal --dp 2 --tp 1 --out tp1  # AutoTP UCP -> tp 1\n"
      "Load the result in DeepSpeed as an ordinary checkpoint (engine.load_checkpoint(OUT)).");
  reshard_cmd->add_option("SRC", reshard.input, "UCP folder, or ZeRO save folder / tag folder")
      ->required();
  reshard_cmd->add_option("--dp", reshard.dp, "target data-parallel world size")
      ->required()
      ->check(PositiveInt());
  reshard_cmd
      ->add_option("--tp", reshard.tp,
                   "target tensor-parallel size (default: keep; from a UCP also 1)")
      ->check(PositiveInt());
  reshard_cmd
      ->add_option("--autoep-size", reshard.autoep_size,
                   "target AutoEP autoep_size (default: keep)")
      ->check(PositiveInt());
  reshard_cmd
      ->add_option("--zero-stage", reshard.zero_stage,
                   "target ZeRO stage (default: keep): 1 <-> 2, or 0 -> 1|2 (required for a ZeRO-0 "
                   "source); DeepSpeed cannot cross ZeRO-3")
      ->check(OneOf(ucp::cli::kZeroStages));
  reshard_cmd
      ->add_option("--tag", reshard.tag, "output tag folder (default: global_step<global_steps>)")
      ->check(FolderName());
  reshard_cmd
      ->add_option("--input-tag", reshard.input_tag,
                   "ZeRO save folder: the tag to read instead of `latest`")
      ->check(FolderName());
  reshard_cmd
      ->add_option("--out", reshard.output, "output save folder (must not exist unless --force)")
      ->required();
  reshard_cmd
      ->add_option("--threads", reshard.threads, "copy threads (default: all hardware threads)")
      ->check(PositiveInt());
  reshard_cmd
      ->add_option("--memory-limit", reshard.memory_limit,
                   "copy buffers in flight (default 256MiB)")
      ->check(ByteSize());
  reshard_cmd->add_flag("--dry-run", reshard.dry_run, "print the plan; write nothing");
  reshard_cmd->add_flag("--json", reshard.json, "print the result (or the plan) as JSON");
  reshard_cmd->add_flag("--force", reshard.force, "replace an existing OUT");
  reshard_cmd->add_flag("--no-fsync", reshard.no_fsync, "skip fsync (scratch output)");
  AddDistributedOptions(reshard_cmd, reshard.distributed, reshard.nproc);
  return reshard_cmd;
}

// `ucp export`: its subcommand and options, parsed into the options object given.
CLI::App* AddExport(CLI::App& app, ucp::cli::ExportCommandOptions& exp) {
  CLI::App* export_cmd = app.add_subcommand(
      "export",
      "Write the model weights (what load_module_only loads: trainable fp32 masters, frozen "
      "parameters, buffers, tied parameters under both names) of any checkpoint (ZeRO folder read "
      "in place, UCP, weights) as safetensors, torch .bin or HDF5; AutoEP experts in the Hugging "
      "Face fused layout or per expert; sharded with an index like Hugging Face; metadata records "
      "the source step and topology.");
  export_cmd->add_option("SRC", exp.input, "ZeRO save/tag folder, UCP folder or weights")
      ->required();
  export_cmd->add_option("--out", exp.output, "folder to create")->required();
  export_cmd->add_option("--format", exp.format, "safetensors (default), bin or hdf5")
      ->check(OneOf(ucp::cli::kExportFormats));
  export_cmd
      ->add_option(
          "--dtype", exp.dtype,
          "cast floating tensors: f32, bf16 or f16 (fp32, fp16 also accepted; default: as stored)")
      ->check(OneOf(ucp::cli::kExportDTypes));
  export_cmd
      ->add_option("--max-shard-size", exp.max_shard_size,
                   "e.g. 5GB (SI) or 2GiB; default: one file")
      ->check(ByteSize());
  export_cmd
      ->add_option("--moe-layout", exp.moe_layout,
                   "AutoEP experts: fused (gate_up_proj/down_proj) or per-expert")
      ->check(OneOf(ucp::cli::kMoeLayouts));
  export_cmd->add_option("--tag", exp.tag, "ZeRO save folder: the tag to read instead of `latest`")
      ->check(FolderName());
  export_cmd->add_flag("--exclude-frozen", exp.exclude_frozen, "leave out frozen parameters");
  export_cmd->add_option("--threads", exp.threads, "copy threads (default: all hardware threads)")
      ->check(PositiveInt());
  export_cmd->add_flag("--dry-run", exp.dry_run, "print what would be written");
  export_cmd->add_flag("--json", exp.json, "print the result as JSON");
  export_cmd->add_flag("--force", exp.force, "replace an existing output folder");
  export_cmd->add_flag("--no-fsync", exp.no_fsync, "skip fsync (scratch output)");
  AddDistributedOptions(export_cmd, exp.distributed, exp.nproc);
  return export_cmd;
}

// `ucp zero-to-fp32`: its subcommand and options, parsed into the options object given.
CLI::App* AddZeroToFp32(CLI::App& app, ucp::cli::ExportCommandOptions& z2f) {
  CLI::App* z2f_cmd = app.add_subcommand(
      "zero-to-fp32",
      "Drop-in for DeepSpeed's zero_to_fp32.py (same arguments, same file names, keys, order and "
      "dtypes), streaming instead of loading every shard; also BF16_Optimizer and AutoEP "
      "checkpoints, which zero_to_fp32.py refuses.");
  z2f_cmd->add_option("checkpoint_dir", z2f.input, "the save folder (with `latest`)")->required();
  z2f_cmd->add_option("output_dir", z2f.output, "folder for pytorch_model.bin / model.safetensors")
      ->required();
  z2f_cmd->add_option("-t,--tag", z2f.tag, "checkpoint tag instead of `latest`")
      ->check(FolderName());
  z2f_cmd->add_option("--max_shard_size", z2f.max_shard_size, "shard size (default 5GB)")
      ->default_val("5GB")
      ->check(ByteSize());
  z2f_cmd->add_flag("--safe_serialization", z2f.safe_serialization,
                    "write model.safetensors instead of .bin");
  z2f_cmd->add_flag("--exclude_frozen_parameters", z2f.exclude_frozen,
                    "leave out frozen parameters");
  z2f_cmd->add_flag("-d,--debug", z2f.debug, "accepted for compatibility; no effect");
  z2f_cmd->add_flag("--force", z2f.force, "replace an earlier output of ucp's own");
  z2f_cmd->add_flag("--json", z2f.json, "print the result as JSON");
  z2f_cmd->add_flag("--no-fsync", z2f.no_fsync, "skip fsync (scratch output)");
  return z2f_cmd;
}

// `ucp verify`: its subcommand and options, parsed into the options object given.
CLI::App* AddVerify(CLI::App& app, ucp::cli::VerifyCommandOptions& verify) {
  CLI::App* verify_cmd = app.add_subcommand(
      "verify",
      "Check a checkpoint folder without converting it: a DeepSpeed ZeRO folder (every file's "
      "CRC-32s, the rank and expert files, steps, fragments covering every parameter exactly once, "
      "padding), a Universal Checkpoint folder (per-parameter files, step.pt, param_shapes, "
      "manifest) or a ucp export (manifest). Names every problem; exit 0 clean, 1 problems, 3 no "
      "problem found but some checks could not be made (listed as skipped).");
  verify_cmd
      ->add_option("DIR", verify.path,
                   "checkpoint folder (ZeRO save folder or tag folder, UCP folder, export)")
      ->required();
  verify_cmd
      ->add_option("--tag", verify.tag,
                   "ZeRO save folder: the tag to check instead of the one `latest` names")
      ->check(FolderName());
  verify_cmd->add_flag("--json", verify.json, "print the report as one JSON document");
  verify_cmd->add_flag("--no-crc", verify.no_crc,
                       "skip reading every record for its CRC-32 (structure only)");
  return verify_cmd;
}

// A usage error (exit 2) unless the first word that is not an option names a command; -1 when
// it does (or none is given and CLI11 will say so).
int CheckCommandWord(const CLI::App& app, int argc, char** argv, bool json) {
  std::vector<std::string> commands;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    commands.push_back(sub->get_name());
  if (argc < 2) {
    ucp::cli::Fail({std::cout, std::cerr, "ucp", false},
                   "no command given; the commands: " + absl::StrJoin(commands, ", "),
                   ucp::cli::kExitUsage);
    std::cerr << "Run 'ucp --help' for what each does.\n";
    return ucp::cli::kExitUsage;
  }
  for (int i = 1; i < argc; ++i) {  // the first word that is not an option must name a command
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') continue;
    if (std::find(commands.begin(), commands.end(), word) != commands.end()) break;
    ucp::cli::Fail({std::cout, std::cerr, "ucp", json},
                   ucp::cli::UnknownCommandMessage(word, commands), ucp::cli::kExitUsage);
    std::cerr << "Run 'ucp --help' for the commands.\n";
    return ucp::cli::kExitUsage;
  }
  return -1;
}

// `ucp inspect PATH`: a folder is a checkpoint summary, a file its value tree.
int RunInspectVerb(const ucp::cli::InspectOptions& inspect,
                   ucp::cli::InspectCheckpointOptions& inspect_dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(inspect.path, ec)) {
    if (inspect.verify) {  // checking nothing while saying nothing would look like a pass
      return ucp::cli::Fail(
          {std::cout, std::cerr, "inspect", inspect.json},
          "--verify checks one file; for a checkpoint folder run `ucp verify " + inspect.path + "`",
          ucp::cli::kExitUsage);
    }
    inspect_dir.path = inspect.path;
    inspect_dir.json = inspect.json;
    return ucp::cli::RunInspectCheckpoint(inspect_dir, std::cout, std::cerr);
  }
  return ucp::cli::RunInspect(inspect, std::cout, std::cerr);
}

}  // namespace

int main(int argc, char** argv) {
  if (kConvertAlias || InvokedAsAlias(argc > 0 ? argv[0] : nullptr))
    return ConvertAliasMain(argc, argv);
  if (argc > 1 && std::strcmp(argv[1], "train") == 0) return ucp::cli::ExecTrain(argc, argv);
  CLI::App app{kDescription, "ucp"};
  app.set_version_flag("--version", "ucp " UCP_VERSION);
  app.require_subcommand(1);
  app.footer("Run 'ucp <command> --help' for a command's options.");

  ucp::cli::InspectOptions inspect;
  ucp::cli::InspectCheckpointOptions inspect_dir;
  ucp::cli::ConvertCommandOptions convert;
  ucp::cli::DiffCommandOptions diff;
  ucp::cli::ReshardCommandOptions reshard;
  ucp::cli::ExportCommandOptions exp;
  ucp::cli::ExportCommandOptions z2f;
  z2f.zero_to_fp32 = true;
  ucp::cli::VerifyCommandOptions verify;
  CLI::App* inspect_cmd = AddInspect(app, inspect, inspect_dir);
  CLI::App* convert_cmd = AddConvert(app, convert);
  CLI::App* diff_cmd = AddDiff(app, diff);
  CLI::App* reshard_cmd = AddReshard(app, reshard);
  CLI::App* export_cmd = AddExport(app, exp);
  CLI::App* z2f_cmd = AddZeroToFp32(app, z2f);
  CLI::App* verify_cmd = AddVerify(app, verify);

  const bool json = WantsJson(argc, argv);
  if (const int code = CheckCommandWord(app, argc, argv, json); code >= 0) return code;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return ParseFailed(app, e, json);
  }
  if (*inspect_cmd) return RunInspectVerb(inspect, inspect_dir);
  if (*diff_cmd) return ucp::cli::RunDiff(diff, std::cout, std::cerr);
  if (*verify_cmd) return ucp::cli::RunVerify(verify, std::cout, std::cerr);
  // The verbs that write: progress on a terminal, and Ctrl-C / SIGTERM remove what was staged
  // (a dry run writes nothing: Ctrl-C stops it at once as usual).
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  // --nproc: this process only launches and supervises the ranks (a dry run writes nothing and
  // prints its plan once, here).
  if (*reshard_cmd && reshard.nproc > 0 && !reshard.dry_run) {
    return ucp::cli::LaunchRanks(reshard.nproc, "ucp reshard", argc, argv, std::cerr);
  }
  if (*export_cmd && exp.nproc > 0 && !exp.dry_run) {
    return ucp::cli::LaunchRanks(exp.nproc, "ucp export", argc, argv, std::cerr);
  }
  if (*convert_cmd && convert.nproc > 0 && !convert.dry_run && !convert.input.empty()) {
    return ucp::cli::LaunchRanks(convert.nproc, "ucp convert", argc, argv, std::cerr);
  }
  if (*reshard_cmd) {
    if (!reshard.dry_run) ucp::cli::InstallInterruptHandlers();
    reshard.progress = tty;
    return ucp::cli::RunReshard(reshard, std::cout, std::cerr);
  }
  if (*export_cmd || *z2f_cmd) {
    ucp::cli::ExportCommandOptions& e = *export_cmd ? exp : z2f;
    if (!e.dry_run) ucp::cli::InstallInterruptHandlers();
    e.progress = tty;
    return ucp::cli::RunExport(e, std::cout, std::cerr);
  }
  if (*convert_cmd) {
    if (convert.input.empty()) {
      std::cerr << "error: convert: INPUT (or --input_folder) is required\nRun with --help for "
                   "more information.\n";
      return 2;
    }
    if (!convert.dry_run) ucp::cli::InstallInterruptHandlers();
    convert.progress = tty;
    return ucp::cli::RunConvert(convert, std::cout, std::cerr);
  }
  return 2;
}
