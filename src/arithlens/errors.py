"""Errors raised at the edges of arithlens: each carries a one-line message naming the problem, and each is
also the builtin a Python user would catch for it (ValueError, TypeError, FileNotFoundError)."""


class ArithLensError(ValueError):
    """Base class: bad input that the CLI reports as `error: <message>` with exit code 2."""


class ArgumentTypeError(ArithLensError, TypeError):
    """An argument of the wrong type (a bool where a count is needed, a number where a node name is)."""


class NotFoundError(ArithLensError, FileNotFoundError):
    """A file or folder that does not exist."""

    def __str__(self) -> str:  # OSError's own str would prefix "[Errno ...]" when built with one argument
        return str(self.args[0]) if self.args else ""


class QuestionRequestError(ArithLensError):
    """A question request that cannot be met (impossible class, too many distinct questions, ...)."""


class ParseError(ArithLensError):
    """A malformed node or model name."""


class CheckpointError(ArithLensError):
    """A checkpoint that is missing, corrupt or of the wrong shape."""


class MissingCheckpointError(CheckpointError, NotFoundError):
    """A checkpoint path, or the weights file inside a checkpoint folder, that does not exist."""


class ConflictError(ArithLensError):
    """Two sources that disagree (a model card and its weights' header, a node file and the model, a name and an
    option): nothing is guessed, the message names both."""


class OutputError(ArithLensError):
    """An output target that cannot be written (a file where a folder is needed, a read-only or full disk,
    a folder another run is writing into, a device, FIFO, socket or symlink)."""


class ResourceError(ArithLensError):
    """A request that cannot fit this machine (more threads than cores, more memory than there is)."""


class TrainingDivergedError(ArithLensError):
    """Training whose loss became NaN or infinite: stopped, the last finite checkpoint kept."""
