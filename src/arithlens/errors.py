"""Errors raised at the edges of arithlens: each carries a one-line message naming the problem."""


class ArithLensError(ValueError):
    """Base class: bad input that the CLI reports as `error: <message>` with exit code 2."""


class QuestionRequestError(ArithLensError):
    """A question request that cannot be met (impossible class, too many distinct questions, ...)."""


class ParseError(ArithLensError):
    """A malformed node or model name."""


class CheckpointError(ArithLensError):
    """A checkpoint that is missing, corrupt or of the wrong shape."""


class OutputError(ArithLensError):
    """An output target that cannot be written (a file where a folder is needed, a read-only or full disk,
    a folder another run is writing into)."""


class ResourceError(ArithLensError):
    """A request that cannot fit this machine (more threads than cores, more memory than there is)."""
