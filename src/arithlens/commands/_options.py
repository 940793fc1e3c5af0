"""Options several commands share: kept for imports of this name; they live in `_common` now."""

from arithlens.commands._common import (  # noqa: F401
    device_option,
    json_option,
    model_option,
    quiet_option,
    seed_option,
    sweep_threads_option,
    threads_option,
)
