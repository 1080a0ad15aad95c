"""Errors that the command line reports as one clear message instead of a traceback."""


class PmixError(ValueError):
  """Base class of user-facing errors."""


class DataError(PmixError):
  """Bad input data; the message names the file, line and field where known."""


class ConfigError(PmixError):
  """An invalid or inconsistent configuration value."""
