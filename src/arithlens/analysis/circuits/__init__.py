"""Scoring any circuit the way the field does: an ablation card (mean, plain mean, resample, zero), MIB's
faithfulness curve with CPR and CMD, and a node circuit that survives resample ablation; written against a
small runner interface (`runner.CircuitRunner`) so node circuits work today and edge circuits when they land."""

CARD_SEED = 280_029  # an ablation card's own seed: none of its questions is drawn by a circuit search (those use 140014)
STREAM_CARD = 11  # the card's question stream under its seed
