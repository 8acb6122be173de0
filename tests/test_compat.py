"""The 0.1 import paths keep working for one release: each warns once and gives the very object of its new home.

``OLD_PUBLIC_NAMES`` is every public name the old modules defined (read from the 0.1 sources before the move).
Each must still resolve through its old path, or be listed in ``REMOVED`` of ``hf_easyanimate.utils.deprecation``,
whose AttributeError then names what replaced it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
import warnings

import pytest
from conftest import REPO_ROOT

from hf_easyanimate.utils import deprecation

OLD_PUBLIC_NAMES = {
    'hf_easyanimate.args': [
        'ArgumentValidationError', 'DataArguments', 'EasyAnimateTrainingArguments', 'LOSS_TYPES',
        'MEMORY_FLAGS', 'ModelArguments', 'OBJECTIVE_FLAGS', 'SAVE_LORA_FORMATS', 'SIZE_GRID',
        'STORAGE_DTYPE_NAMES', 'TRAIN_MODES', 'VAE_TEMPORAL_COMPRESSION', 'WEIGHTING_SCHEMES',
        'check_blocks_to_swap', 'check_combination', 'note_off_grid_frames'
    ],
    'hf_easyanimate.parser': [
        'ARGUMENT_CLASSES', 'HELP_FLAGS', 'RecipeError', 'TRAIN_DESCRIPTION', 'build_parser', 'check_value',
        'early_exit', 'known_keys', 'load_recipe', 'parse_args', 'parse_values', 'split_recipe', 'usage',
        'wants_help'
    ],
    'hf_easyanimate.flagdocs': [
        'FlagGroup', 'HEADER', 'default_value', 'flag_groups', 'format_help', 'is_redeclared',
        'legacy_target', 'render'
    ],
    'hf_easyanimate.legacy': [
        'APPLIED_KEYS', 'LEGACY_FLAGS', 'LegacyFlag', 'LegacyFlagConflict', 'ModelConfigMismatch',
        'ModelConfigReading', 'ORIGINAL_TRANSFORMER_TYPES', 'TRANSFORMER_CONFIG_KEYS',
        'read_legacy_model_config', 'read_model_config', 'report_model_config', 'same_cli_value',
        'translate_legacy'
    ],
    'hf_easyanimate.trainer': [
        'EasyAnimateTrainer'
    ],
    'hf_easyanimate.callbacks': [
        'DiffusersTensorBoardCallback', 'ValidationCallback', 'ValidationSampler', 'ValidationSettings',
        'save_validation', 'use_diffusers_tensorboard'
    ],
    'hf_easyanimate.hub': [
        'CardFacts', 'HUB_FILES', 'LORA_FILES', 'MODEL_CARD_NAME', 'NOT_RECIPE_FIELDS', 'RECIPE_NAME',
        'RESUME_STATE_PREFIXES', 'effective_recipe', 'final_metrics', 'format_size', 'hub_files',
        'lora_formats', 'loss_curve_points', 'model_card_text', 'push_files', 'recipe_yaml', 'written_summary'
    ],
    'hf_easyanimate.report': [
        'LATEST_SHEET', 'LOSS_PLOT', 'REPORT_DIR', 'ReportError', 'ReportPaths', 'curve',
        'find_trainer_state', 'latest_validation_sheet', 'loss_curves', 'metric_curves', 'plot_losses',
        'render'
    ],
    'hf_easyanimate.compare': [
        'BASE_ROW', 'COMPARE_DIR', 'CompareError', 'GRID_NAME', 'RESULT_NAME', 'Row', 'base_model_of',
        'compare', 'compare_main', 'find_rows', 'grid_image', 'read_prompts', 'table'
    ],
    'hf_easyanimate.inference': [
        'first_frame_conditioning', 'load_lora_into_pipeline', 'load_pipeline', 'merge_lora', 'render_video',
        'unmerge_lora'
    ],
    'hf_easyanimate.inpaint': [
        'EncodedMaskInpaintConditioner', 'InpaintConditioner', 'check_mask', 'empty_inpaint_latents',
        'masked_pixels', 'reference_attention_mask'
    ],
    'hf_easyanimate.media': [
        'CONTACT_SHEET', 'METRICS_FILE', 'MIN_SHEET_FRAME', 'VALIDATION_DIR', 'caption_font', 'contact_sheet',
        'enlarged', 'pick_frames', 'printable', 'to_uint8_frames', 'write_mp4', 'write_png'
    ],
    'hf_easyanimate.atomic': [
        'atomic_path', 'follow_umask'
    ],
    'hf_easyanimate.quiet': [
        'BENIGN_VAE_KEYS', 'deepspeed_in_use', 'install', 'process_rank'
    ],
    'hf_easyanimate.configs': [
        'HERE', 'PublishedConfig', 'dataclass', 'find_published', 'published_configs'
    ],
    'hf_easyanimate.training.secrets': [
        'REDACTED', 'SECRET_SUFFIX', 'T', 'is_secret', 'mask', 'redacted', 'save_training_args',
        'secret_values'
    ],
    'hf_easyanimate.training.preflight': [
        'PreflightError', 'REQUIRED', 'check_clip_model', 'check_data_paths', 'check_required', 'preflight',
        'resolve_loss_type'
    ],
    'hf_easyanimate.testing.legacy': [
        'CLIP_IMAGE_SIZE', 'EMA_LEFTOVERS', 'FIXED_TABLES', 'LEGACY_TINY_VERSIONS', 'MODEL_INDEX',
        'TinyLegacyConfig', 'deterministic_weights', 'make_tiny_legacy_model', 'transformer_config',
        'vae_config'
    ],
    'hf_easyanimate.models.lora_files': [
        'DTYPES', 'EASYANIMATE_LORA_NAME', 'FORMATS', 'ORIGINAL_CHECKPOINT_LORA_NAME', 'PEFT_CONFIG_NAME',
        'PEFT_WEIGHTS_NAME', 'atomic_copy', 'download_lora', 'export_lora', 'find_lora_file', 'read_lora',
        'save_easyanimate_lora', 'save_peft_adapter', 'save_peft_model'
    ],
    'hf_easyanimate.models.lora_format': [
        'ARCHITECTURE_METADATA_KEY', 'BLOCK_PATTERN', 'DIFFUSERS_TO_ORIGINAL', 'KEY_STYLES',
        'KOHYA_BLOCK_PATTERN', 'KohyaNameResolver', 'LEGACY_ARCHITECTURES', 'LORA_PREFIX',
        'LiteralNameResolver', 'LoraFormatError', 'LoraModule', 'LoraWeights', 'ORIGINAL_TO_DIFFUSERS',
        'PEFT_CONFIG_METADATA_KEY', 'PEFT_PREFIX', 'TEXT_ENCODER_PREFIX', 'addnet_hashes', 'from_easyanimate',
        'from_peft', 'is_easyanimate_state_dict', 'kohya_name', 'legacy_family', 'legacy_template_resolver',
        'peft_config_for', 'template_resolver', 'to_diffusers_path', 'to_easyanimate', 'to_original_path',
        'to_peft'
    ],
    'hf_easyanimate.data.commands': [
        'BUCKETS_DESCRIPTION', 'VALIDATE_DESCRIPTION', 'buckets_main', 'validate_data_main'
    ],
    'hf_easyanimate.memory.command': [
        'DESCRIPTION', 'ENCODER_PARAMETERS', 'RecipePlan', 'encoder_bytes', 'largest_bucket',
        'plan_memory_main', 'plan_recipe', 'shape_from_values', 'startup_line'
    ],
    'hf_easyanimate.cache.setup': [
        'PRECOMPUTE_DESCRIPTION', 'build_cached_data', 'cache_spec', 'precompute_main'
    ],
    'hf_easyanimate.train': [
        'apply_storage_dtypes', 'build_cached_training_data', 'build_eval_data', 'build_inpaint_conditioner',
        'build_lora_model', 'build_objective', 'build_training_data', 'build_validation',
        'check_prompt_lengths', 'load_validation_clip', 'main', 'needs_encoder_weights', 'optimizer_override',
        'report_bucket_plan', 'report_written', 'run'
    ],
    'hf_easyanimate.cli': [
        'COMMANDS', 'main', 'trained_size'
    ],
    'hf_easyanimate.models.loading': [
        'DIFFUSERS_LAYOUT', 'EasyAnimateComponents', 'LEGACY_OBJECTIVES', 'LEGACY_VERSIONS',
        'MISSING_COMPONENTS', 'ModelLoadError', 'ORIGINAL_TO_DIFFUSERS_KEYS', 'UnsupportedModelError',
        'V5_FAMILY_SUPPORT', 'check_learned_sigma_support', 'check_legacy_training_setup', 'check_model_path',
        'check_training_setup', 'checkpoint_loss_type', 'checkpoint_version',
        'convert_diffusers_transformer_keys', 'convert_original_transformer_keys', 'detect_original_version',
        'detect_version', 'ensure_supported_architecture', 'has_original_layout', 'load_components',
        'load_legacy_components', 'load_transformer', 'looks_local', 'read_model_index',
        'read_original_config', 'read_transformer_config', 'transformer_from_config', 'transformer_skeleton'
    ],
    'hf_easyanimate.models.vae': [
        'encode_pixels', 'encode_posterior', 'frame_grid', 'legacy_frame_grid', 'local_frame_grid',
        'sample_posterior', 'temporal_latents'
    ],
    'hf_easyanimate.models.text': [
        'DualPromptEncoder', 'PromptEncoder', 'T5PromptEncoder', 'build_prompt_encoder',
        'encode_with_plain_tokenizer'
    ],
    'hf_easyanimate.models.lora': [
        'ADAPTED_CLASS_NAMES', 'LoraTargetError', 'REGEX_CHARACTERS', 'adapted_non_linear_modules',
        'add_lora', 'build_lora_config', 'linear_module_paths', 'require_linear_targets',
        'resolve_target_modules'
    ],
    'hf_easyanimate.models.encoders': [
        'FrozenEncoders', 'is_skeleton'
    ],
    'hf_easyanimate.models.inputs': [
        'base_transformer', 'transformer_inputs'
    ],
    'hf_easyanimate.models.legacy': [
        'HunyuanTransformer3DModel', 'LegacyLoadError', 'LegacyMagvitVAE', 'Transformer3DModel',
        'load_image_encoder', 'load_legacy_transformer', 'load_legacy_vae', 'version_of_config'
    ],
    'hf_easyanimate.models.legacy.loading': [
        'EMA_CONFIG_KEYS', 'FIXED_TABLE_SUFFIXES', 'LegacyLoadError', 'SHOW_KEYS', 'TRANSFORMER_CLASSES',
        'VAE_DECODER_PREFIXES', 'check_state_dict', 'constructor_config', 'load_image_encoder',
        'load_legacy_transformer', 'load_legacy_vae', 'read_json', 'read_state_dict', 'version_of_config'
    ],
    'hf_easyanimate.memory.planner': [
        'CUDA_WORKSPACE', 'EIGHT_BIT_OPTIMIZERS', 'GIB', 'LINEAR_DEPTH_CLASSES', 'MemoryPlan',
        'OPTIMIZER_BYTES_PER_PARAMETER', 'PlanContext', 'PlannerError', 'RunShape', 'SLOWDOWN',
        'TRACED_DEPTHS', 'build_context', 'fake_inputs', 'fake_prompt', 'find_transformer_config',
        'format_table', 'latent_grid', 'optimizer_state_bytes', 'plan', 'step_peak', 'storage_of',
        'suggestions', 'traced_peak', 'transformer_block_count'
    ],
    'hf_easyanimate.testing': [
        'BERT_MAX_LENGTH', 'COLOURS', 'DEMO_IMAGE_SIZES', 'DEMO_VIDEO_SIZES', 'QWEN_CHAT_TEMPLATE',
        'QWEN_SPECIAL_TOKENS', 'SHAPES', 'SUPPORTED_TINY_VERSIONS', 'T5_MAX_LENGTH', 'TinyModelConfig',
        'build_tiny_bert_t5', 'build_tiny_bert_tokenizer', 'build_tiny_clip_tokenizer',
        'build_tiny_components', 'build_tiny_qwen2_vl', 'build_tiny_t5_tokenizer', 'build_tiny_tokenizer',
        'make_demo_data', 'make_tiny_clip', 'make_tiny_model', 'write_mp4'
    ],
    'hf_easyanimate.cache': [
        'CacheMissError', 'CacheSpec', 'CachedCollator', 'CachedDataset', 'CachedInpaintMasks', 'LatentCache',
        'ShardWriter', 'check_complete', 'latent_key', 'prompt_key', 'text_fingerprint', 'vae_fingerprint'
    ],
    'hf_easyanimate.data': [
        'ASPECT_RATIO_512', 'ASPECT_RATIO_RANDOM_CROP_512', 'ASPECT_RATIO_RANDOM_CROP_PROB', 'BatchPlan',
        'BucketBatchSampler', 'DataProblem', 'DataProblemLog', 'DataProblemsCallback', 'DataValidationError',
        'EasyAnimateCollator', 'EasyAnimateDataset', 'EmptyEpochError', 'FrameSampling', 'MetadataError',
        'MetadataTable', 'PlanConfig', 'SampleIndex', 'SampleOptions', 'SampleReadError', 'TrainData',
        'bucket_plan', 'bucket_size', 'build_eval_set', 'build_train_data', 'closest_ratio',
        'frames_on_vae_grid', 'frames_per_resolution', 'load_metadata', 'plan_batch', 'prepare_index',
        'unshard_batch_sampler'
    ],
    'hf_easyanimate.memory': [
        'BlockSwapper', 'MemoryPlan', 'PlannerError', 'RunShape', 'activation_offload',
        'find_transformer_config', 'plan', 'storage_dtype', 'store_weights', 'stored_bytes', 'swap_blocks'
    ],
    'hf_easyanimate.training.distributed': [
        'EngineReport', 'ZERO2_CONFIG', 'deepspeed_configured', 'describe_engine', 'has_accelerator',
        'launched_world_size', 'launcher_deepspeed_config', 'load_deepspeed_config',
        'needs_cpu_process_group', 'same_file', 'single_process_cpu_launch'
    ],
    'hf_easyanimate.training.runtime': [
        'setup_logging', 'weight_dtype'
    ],
}


def _resolve(module, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(module, name)


@pytest.mark.parametrize("old", sorted(OLD_PUBLIC_NAMES))
def test_every_old_name_resolves_or_names_its_replacement(old):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(old)
    for name in OLD_PUBLIC_NAMES[old]:
        if f"{old}.{name}" in deprecation.REMOVED:
            with pytest.raises(AttributeError, match="was removed in hf_easyanimate 0.2; use "):
                _resolve(module, name)
        else:
            assert _resolve(module, name) is not None, f"{old}.{name}"


def test_an_old_module_warns_where_it_is_imported_and_forwards_the_same_objects():
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from hf_easyanimate.parser import parse_args\n"
            "from hf_easyanimate.trainers.lora_config import parse_args as new\n"
            "assert parse_args is new\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": REPO_ROOT}, timeout=120)
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "DeprecationWarning" in line]
    assert len(warning) == 1 and warning[0].startswith("<string>:2: DeprecationWarning: hf_easyanimate.parser is "
                                                       "deprecated"), result.stderr
    assert "hf_easyanimate.trainers.lora_config" in warning[0]


def test_old_names_of_kept_modules_warn_and_forward():
    import hf_easyanimate.assembly
    import hf_easyanimate.train

    with pytest.warns(DeprecationWarning, match="hf_easyanimate.train.run is deprecated"):
        assert hf_easyanimate.train.run is hf_easyanimate.assembly.run


def test_a_renamed_entry_point_forwards_to_its_command():
    from hf_easyanimate.commands.precompute import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        setup = importlib.import_module("hf_easyanimate.cache.setup")
    assert setup.precompute_main is main


def test_no_old_path_is_also_a_real_module():
    """An alias must never shadow (or be shadowed by) a module file: the real one would silently win."""
    shadowed = [name for name in deprecation.MOVED if importlib.machinery.PathFinder.find_spec(
        name, [os.path.join(REPO_ROOT, *name.split(".")[:-1])]) is not None]
    assert shadowed == []


def test_the_console_script_and_python_m_print_no_deprecation_warning(tmp_path):
    """Importing an entry module's names (the console script does ``from hf_easyanimate.cli import main``) looks up
    ``__path__`` and friends: those must not reach the forwarding of moved names."""
    for code in ("from hf_easyanimate.cli import main", "from hf_easyanimate.train import main",
                 "import hf_easyanimate.models.loading, hf_easyanimate.testing, hf_easyanimate.training.distributed"):
        result = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                                cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT}, timeout=120)
        assert result.returncode == 0 and "DeprecationWarning" not in result.stderr, (code, result.stderr)
