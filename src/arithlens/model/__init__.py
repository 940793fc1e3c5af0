"""The model layer: `ModelSpec` and its name grammar, the hooked transformer, checkpoints, the TL bridge."""

from arithlens.model.checkpoint import (
    Checkpoint,
    check_state_dict,
    convert_checkpoint,
    load_checkpoint,
    model_from_state_dict,
    save_checkpoint,
    spec_from_state_dict,
    write_atomic,
)
from arithlens.model.spec import GRAMMAR, OPS, ModelSpec, default_percentages
from arithlens.model.tl_adapter import from_transformer_lens, tl_config, to_transformer_lens
from arithlens.model.transformer import HookedTransformer, HookPoint, patch_head, patch_neuron, patch_pos

__all__ = [
    "GRAMMAR",
    "OPS",
    "Checkpoint",
    "HookPoint",
    "HookedTransformer",
    "ModelSpec",
    "check_state_dict",
    "convert_checkpoint",
    "default_percentages",
    "from_transformer_lens",
    "load_checkpoint",
    "model_from_state_dict",
    "patch_head",
    "patch_neuron",
    "patch_pos",
    "save_checkpoint",
    "spec_from_state_dict",
    "tl_config",
    "to_transformer_lens",
    "write_atomic",
]
