"""clinrisk: retraining, monitoring and serving of clinical risk models."""

__version__ = "0.1.0"
