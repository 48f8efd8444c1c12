"""User-facing errors: each names the problem and the fix, so the CLI can print them without a traceback."""


class HistosynthError(Exception):
    """An error a user can act on. ``hint`` says what to do about it."""

    def __init__(self, problem: str, hint: str | None = None):
        self.problem = problem
        self.hint = hint
        super().__init__(problem if not hint else f"{problem}\n  fix: {hint}")


class DataError(HistosynthError):
    """Bad or missing input data (corrupt image, empty folder, no tissue, checksum mismatch...)."""


class ConfigError(HistosynthError):
    """A preset or override that does not fit the configuration schema."""


class ServerError(HistosynthError):
    """A server (MLflow, Triton, pushgateway) that is unreachable or answered with an error."""
