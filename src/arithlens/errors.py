"""Errors raised at the edges of arithlens: each carries a one-line message naming the problem."""


class ArithLensError(ValueError):
    """Base class: bad input that the CLI reports as `error: <message>` with exit code 2."""


class QuestionRequestError(ArithLensError):
    """A question request that cannot be met (impossible class, too many distinct questions, ...)."""


class ParseError(ArithLensError):
    """A malformed node or model name."""


class CheckpointError(ArithLensError):
    """A checkpoint that is missing, corrupt or of the wrong shape."""
