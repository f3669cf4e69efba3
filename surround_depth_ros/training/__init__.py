"""Training, evaluation and the KD ablation of the surround student (the rest of the distillation toolbox)."""

from surround_depth_ros.training.config import ConfigError, TrainingConfig, config_from_dict, load_config

__all__ = ["ConfigError", "TrainingConfig", "config_from_dict", "load_config"]
