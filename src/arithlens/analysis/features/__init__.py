"""Dictionary features of a node: sparse autoencoders trained on a site's activations, their quality, meaning
and effects, and the founding question answered from below (see docs/features.md)."""
