"""MLflow's view of a RiskModel, logged as "models from code" (never imported by clinrisk).

MLflow copies this file into every logged model and runs it when the model is loaded
(`mlflow.pyfunc.load_model`, `mlflow models serve`); `set_model` is how such a file hands
over its model. Logging a file instead of a Python object avoids pickling the class with
CloudPickle (and MLflow's warning about it on every training).
See https://mlflow.org/docs/latest/ml/model/models-from-code/.
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import pandas as pd


class RiskModelPyfunc(mlflow.pyfunc.PythonModel):
    """Validates the input against the model's spec and returns probability and decision."""

    def load_context(self, context):
        import joblib

        self.risk_model = joblib.load(context.artifacts["risk_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from clinrisk.data import validate_frame

        frame = validate_frame(pd.DataFrame(model_input), self.risk_model.spec, require_target=False)
        return self.risk_model.predict(frame)


mlflow.models.set_model(RiskModelPyfunc())
