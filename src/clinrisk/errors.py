"""The project's own errors: every outside failure is translated into one of these."""


class ClinriskError(Exception):
    """Base class; the CLI turns any of these into a message and a non-zero exit."""


class SpecError(ClinriskError):
    """A model spec file is missing or invalid."""


class DataValidationError(ClinriskError):
    """A training or scoring file does not match the model spec.

    `problems` lists one entry per offending column, each naming the first bad rows.
    """

    def __init__(self, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.problems = problems or []


class NoThresholdError(ClinriskError):
    """No decision threshold reaches the precision floor."""


class RegistryError(ClinriskError):
    """The model registry is unreachable or holds no model under the requested alias."""


class NoChampionError(RegistryError):
    """No version carries the `champion` alias yet."""


class OutputError(ClinriskError):
    """A file or folder a command writes cannot be written (the message names it and why)."""


class ExplanationUnavailable(ClinriskError):
    """The model's estimator has no exact explanation method here."""
