"""The analysis layer: nodes and tags, interventions, useful-node discovery, searches, PCA, node studies."""
