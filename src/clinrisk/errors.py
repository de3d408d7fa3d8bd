"""The project's own errors: every outside failure is translated into one of these."""


class ClinriskError(Exception):
    """Base class; the CLI turns any of these into a message and a non-zero exit."""


class SpecError(ClinriskError):
    """A model spec file is missing or invalid."""


class RepeatedQueryParameters(ClinriskError):
    """A query string gives a feature more than once (`age=55&age=56`, or `bp=90` beside
    `blood_pressure=100`): which value was meant cannot be guessed.

    `repeats` maps each such feature (or unknown parameter) to the keys it was given under, in order.
    """

    def __init__(self, repeats: dict[str, list[str]]):
        self.repeats = repeats
        super().__init__("; ".join(f"{name}: {self.message_for(name)}" for name in repeats))

    def message_for(self, name: str) -> str:
        """`given 2 times (bp, blood_pressure): give it once`: what went wrong with one feature."""
        keys = self.repeats[name]
        return f"given {len(keys)} times ({', '.join(keys)}): give it once"


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
