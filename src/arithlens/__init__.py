"""arithlens: mechanistic interpretability of transformers that do integer arithmetic."""

__version__ = "0.1.0"
