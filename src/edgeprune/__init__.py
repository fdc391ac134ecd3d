"""edgeprune: prune trained PyTorch models for edge devices."""
__version__ = "0.1.0"
