"""Files MLflow logs as code with a model (see risk_model_pyfunc.py); not imported by clinrisk."""
