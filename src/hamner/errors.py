"""Exceptions that name the place where the input was wrong."""

from __future__ import annotations


class HamnerError(Exception):
    """Base class for every error this package raises on purpose."""


class DataFormatError(HamnerError, ValueError):
    """A data file does not follow the expected format; names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.detail = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(HamnerError, ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


class ChecksumError(HamnerError):
    """A downloaded file does not match the SHA-256 the project carries."""
