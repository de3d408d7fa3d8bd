"""Monitoring: drift and quality reports (Evidently), the retrain decision, and where reports go."""
