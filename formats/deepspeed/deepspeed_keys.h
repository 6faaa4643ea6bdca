// Every string DeepSpeed puts into a checkpoint that ucp reads: file-name parts, dict keys, pickled
// class names and enum member names (deepspeed-formats.md §1.2, §2, §4.4, §5.2, §7). Nothing else
// in converters/deepspeed spells one of these out; file names are matched by explicit prefix and
// suffix parsing (file_names.h), never by regular expressions.
#pragma once

#include "absl/strings/string_view.h"

namespace ucp::formats::deepspeed::keys {

// --- Save root (§1.1) --------------------------------------------------------------------------
inline constexpr absl::string_view kLatestFile = "latest";
inline constexpr absl::string_view kLatestUniversalFile = "latest_universal";
// ZeRO-Infinity NVMe offload swap folder inside the tag folder.
inline constexpr absl::string_view kOffloadedTensorsDir = "offloaded_tensors";

// --- File names inside the tag folder (§1.2) ---------------------------------------------------
inline constexpr absl::string_view kPtExtension = ".pt";
inline constexpr absl::string_view kModelStatesSuffix = "_model_states.pt";
inline constexpr absl::string_view kOptimStatesSuffix = "_optim_states.pt";
// Old optimizer name variant without the underscore ("..._mp_rank_00optim_states.pt").
inline constexpr absl::string_view kOptimStatesSuffixLegacy = "optim_states.pt";
// ZeRO shard prefixes, tried in this order by DeepSpeed's reshape_utils.get_zero_files.
inline constexpr absl::string_view kZeroShardPrefix = "zero_pp_rank_";
inline constexpr absl::string_view kFp16ZeroShardPrefix = "fp16_zero_pp_rank_";
inline constexpr absl::string_view kBf16ZeroShardPrefix = "bf16_zero_pp_rank_";
inline constexpr absl::string_view kMpRankPrefix = "mp_rank_";
inline constexpr absl::string_view kMpRankInfix = "_mp_rank_";
// layer_{L}_expert_{E}_mp_rank_{MP}_model_states.pt (native MoE and AutoEP ZeRO 0/1/2).
inline constexpr absl::string_view kLayerPrefix = "layer_";
inline constexpr absl::string_view kExpertInfix = "_expert_";
// expert_{E}_mp_rank_{MP}_model_states.pt (legacy native MoE).
inline constexpr absl::string_view kExpertPrefix = "expert_";
// Pipeline layer files: layer_{LL}-model_{TT}-model_states.pt or layer_{LL}-model_states.pt.
inline constexpr absl::string_view kPipelineModelStatesSuffix = "-model_states.pt";
inline constexpr absl::string_view kPipelineModelInfix = "-model_";
// expp_rank_{EP}_mp_rank_{MP}_optim_states.pt (MoE without ZeRO).
inline constexpr absl::string_view kExppRankPrefix = "expp_rank_";

// --- Model-states file keys (§2.1) -------------------------------------------------------------
inline constexpr absl::string_view kModule = "module";
inline constexpr absl::string_view kBufferNames = "buffer_names";
inline constexpr absl::string_view kOptimizer = "optimizer";
inline constexpr absl::string_view kParamShapes = "param_shapes";
inline constexpr absl::string_view kFrozenParamShapes = "frozen_param_shapes";
inline constexpr absl::string_view kSharedParams = "shared_params";
inline constexpr absl::string_view kFrozenParamFragments = "frozen_param_fragments";
inline constexpr absl::string_view kGlobalSteps = "global_steps";
inline constexpr absl::string_view kSkippedSteps = "skipped_steps";
inline constexpr absl::string_view kDpWorldSize = "dp_world_size";
inline constexpr absl::string_view kMpWorldSize = "mp_world_size";
inline constexpr absl::string_view kCheckpointParallelDimensions = "checkpoint_parallel_dimensions";
inline constexpr absl::string_view kPpDegree = "pp_degree";
inline constexpr absl::string_view kTpDegree = "tp_degree";
inline constexpr absl::string_view kDsConfig = "ds_config";
inline constexpr absl::string_view kDsVersion = "ds_version";
inline constexpr absl::string_view kUniversalCheckpointInfo = "universal_checkpoint_info";
inline constexpr absl::string_view kNumExperts = "num_experts";
// Native MoE expert parameter names: <layer prefix>.deepspeed_experts.<local id>.<rest> (§2.5).
inline constexpr absl::string_view kNativeExpertsInfix = ".deepspeed_experts.";
inline constexpr absl::string_view kDsAutoepLayers = "ds_autoep_layers";
inline constexpr absl::string_view kAutoepLayersLegacy = "autoep_layers";
inline constexpr absl::string_view kFolding = "folding";

// --- ds_config keys (a dict saved in every file) -----------------------------------------------
inline constexpr absl::string_view kZeroOptimization = "zero_optimization";
inline constexpr absl::string_view kRoundRobinGradients = "round_robin_gradients";
inline constexpr absl::string_view kElasticCheckpoint = "elastic_checkpoint";
inline constexpr absl::string_view kMicsShardSize = "mics_shard_size";
inline constexpr absl::string_view kUseDataBeforeExpertParallelism =
    "use_data_before_expert_parallelism";

// --- ZeRO optimizer shard keys (§2.2, §2.3, §3.6) ----------------------------------------------
inline constexpr absl::string_view kOptimizerStateDict = "optimizer_state_dict";
inline constexpr absl::string_view kLossScaler = "loss_scaler";
inline constexpr absl::string_view kDynamicLossScale = "dynamic_loss_scale";
inline constexpr absl::string_view kOverflow = "overflow";
inline constexpr absl::string_view kClipGrad = "clip_grad";
inline constexpr absl::string_view kBaseOptimizerState = "base_optimizer_state";
inline constexpr absl::string_view kSinglePartitionOfFp32Groups = "single_partition_of_fp32_groups";
inline constexpr absl::string_view kZeroStage = "zero_stage";
inline constexpr absl::string_view kGroupPaddings = "group_paddings";
inline constexpr absl::string_view kPartitionCount = "partition_count";
inline constexpr absl::string_view kParamSliceMappings = "param_slice_mappings";
inline constexpr absl::string_view kFp32FlatGroups = "fp32_flat_groups";
inline constexpr absl::string_view kFp32Groups =
    "fp32_groups";  // FP16_UnfusedOptimizer (bf16 ZeRO-0)
inline constexpr absl::string_view kDsZeroPartitionGroups = "ds_zero_partition_groups";
// torch optimizer state_dict().
inline constexpr absl::string_view kState = "state";
inline constexpr absl::string_view kParamGroups = "param_groups";
inline constexpr absl::string_view kParams = "params";
inline constexpr absl::string_view kMoe = "moe";
inline constexpr absl::string_view kStep = "step";
inline constexpr absl::string_view kExpAvg = "exp_avg";
inline constexpr absl::string_view kExpAvgSq = "exp_avg_sq";

// --- ds_zero_partition_groups entries (§4.4) ---------------------------------------------------
inline constexpr absl::string_view kSubGroup = "sub_group";
inline constexpr absl::string_view kPartitionRank = "partition_rank";
inline constexpr absl::string_view kPartitionRanks = "partition_ranks";
inline constexpr absl::string_view kFamilies = "families";
inline constexpr absl::string_view kGroupNames = "group_names";
inline constexpr absl::string_view kFamilyAutoepExpert = "autoep_expert";

// --- ds_autoep_layers entries (§4.4) -----------------------------------------------------------
inline constexpr absl::string_view kMoeLayerId = "moe_layer_id";
inline constexpr absl::string_view kModulePath = "module_path";
inline constexpr absl::string_view kNumLocalExperts = "num_local_experts";
inline constexpr absl::string_view kEpSize = "ep_size";
inline constexpr absl::string_view kExpertKeyPrefix = "expert_key_prefix";
inline constexpr absl::string_view kCheckpointFormat = "checkpoint_format";
inline constexpr absl::string_view kCheckpointFormatVersion = "checkpoint_format_version";
inline constexpr absl::string_view kEpGroupName = "ep_group_name";
inline constexpr absl::string_view kEpRank = "ep_rank";
inline constexpr absl::string_view kExpertDataParallelRank = "expert_data_parallel_rank";
inline constexpr absl::string_view kExpertDataParallelWorldSize = "expert_data_parallel_world_size";
inline constexpr absl::string_view kGlobalExpertStart = "global_expert_start";
inline constexpr absl::string_view kGlobalExpertEnd = "global_expert_end";
inline constexpr absl::string_view kFormatZero3Partitioned = "zero3_partitioned";
inline constexpr absl::string_view kFormatPerExpertFiles = "per_expert_files";
inline constexpr int kZero3PartitionedFormatVersion = 1;
// The fused expert weights of one AutoEP layer: <expert_key_prefix>.w1 / .w2 / .w3 (§7.1).
inline constexpr absl::string_view kAutoepFusedWeights[] = {"w1", "w2", "w3"};

// --- universal_checkpoint_info (§5.2) ----------------------------------------------------------
inline constexpr absl::string_view kUniversalCheckpointVersion = "universal_checkpoint_version";
inline constexpr absl::string_view kTpReplicatedParameterPatterns =
    "tp_replicated_parameter_patterns";
inline constexpr absl::string_view kParameterToAveragePatterns = "parameter_to_average_patterns";
inline constexpr absl::string_view kParameterWithRowParallelismPatterns =
    "parameter_with_row_parallelism_patterns";
inline constexpr absl::string_view kVocabularyParameterPatterns = "vocabulary_parameter_patterns";
inline constexpr absl::string_view kPipelineReplicatedParameterPatterns =
    "pipeline_replicated_parameter_patterns";
inline constexpr absl::string_view kParameterWith2SubParamsCatDim0 =
    "parameter_with_2_sub_params_cat_dim_0";
inline constexpr absl::string_view kParameterWithSubParams = "parameter_with_sub_params";
inline constexpr absl::string_view kSubParamShardWidths = "sub_param_shard_widths";
inline constexpr absl::string_view kAutotpUnsupportedParameterPatterns =
    "autotp_unsupported_parameter_patterns";
inline constexpr absl::string_view kOriginalVocabSize = "original_vocab_size";
inline constexpr absl::string_view kExpertParameterPatterns = "expert_parameter_patterns";

// --- Pickled classes (§2.6) --------------------------------------------------------------------
inline constexpr absl::string_view kZeroConfigModule = "deepspeed.runtime.zero.config";
inline constexpr absl::string_view kZeroStageEnum = "ZeroStageEnum";
// ZeroStageEnum member names, indexed by value (max_stage is an alias of weights).
inline constexpr absl::string_view kZeroStageNames[] = {"disabled", "optimizer_states", "gradients",
                                                        "weights"};
inline constexpr absl::string_view kZeroStageMaxAlias = "max_stage";
inline constexpr absl::string_view kTensorFragmentModule = "deepspeed.utils.tensor_fragment";
inline constexpr absl::string_view kFragmentAddress = "fragment_address";
inline constexpr absl::string_view kFragmentNumel = "numel";
inline constexpr absl::string_view kFragmentStart = "start";
// getattr is written as __builtin__.getattr (protocol 2) or builtins.getattr.
inline constexpr absl::string_view kBuiltinModules[] = {"__builtin__", "builtins"};
inline constexpr absl::string_view kGetattr = "getattr";
inline constexpr absl::string_view kTorchModule = "torch";
inline constexpr absl::string_view kTorchSize = "Size";

// --- UCP state names (§5): the per-parameter files zero/<name>/<state>.pt ----------------------
inline constexpr absl::string_view kUcpFp32 = "fp32";
inline constexpr absl::string_view kUcpExpAvg = "exp_avg";
inline constexpr absl::string_view kUcpExpAvgSq = "exp_avg_sq";
inline constexpr absl::string_view kUcpStep = "step";
// expert_parameter_patterns that ds_to_universal writes into rewritten AutoEP model files (§5.4):
// ZeRO-1/2 without, ZeRO-3 with the leading ".*" (two spellings of one rule, as DeepSpeed has
// them).
inline constexpr absl::string_view kUcpExpertPatternZero12 = "\\.experts\\.w[123]$";
inline constexpr absl::string_view kUcpExpertPatternZero3 = ".*\\.experts\\.w[123]$";
// ds_to_universal's "lightweight" ZeRO-1/2 AutoEP layer metadata keeps these fields, in this order
// (deepspeed_checkpoint.py AUTOEP_METADATA_FIELDS).
inline constexpr absl::string_view kUcpAutoepMetadataFields[] = {
    kMoeLayerId, kModulePath, kExpertKeyPrefix, kNumExperts, kNumLocalExperts, kEpSize};
// universal_checkpoint_info that --inject_missing_state supplies when a model file has none.
inline constexpr double kUniversalCheckpointVersionValue = 0.4;

}  // namespace ucp::formats::deepspeed::keys
