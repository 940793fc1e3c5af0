"""The report layer: figures (quanta maps, PCA, loss curves) and the offline HTML report."""
