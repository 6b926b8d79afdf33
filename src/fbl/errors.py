"""The project's user-error type.

A :class:`ConfigError` is a mistake in what the user asked for (unknown name, bad value, missing
data). The CLI prints it as one line and exits non-zero; anything else is a bug and keeps its
traceback. It subclasses :class:`ValueError` so library callers can catch the usual type.
"""


class ConfigError(ValueError):
    """Invalid user input: reported as one line by the CLI, never as a traceback."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says whether and how the run can be resumed."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: a property of the run's settings, reported as one line."""
