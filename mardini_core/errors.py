"""The project's own error types.

Every error a user can cause is raised as a `MarDiniError` subclass whose message names the problem
and the fix, so the CLI and the ComfyUI nodes can show one clear line instead of a deep traceback.
"""


class MarDiniError(Exception):
    """Base class of every error the user can cause and fix."""


class ConfigError(MarDiniError, ValueError):
    """A model or training configuration is invalid."""


class CheckpointError(MarDiniError):
    """A checkpoint file is missing, corrupt, foreign or does not match its config."""


class MaskError(MarDiniError, ValueError):
    """A frame mask is invalid for the requested task or model."""


class InputError(MarDiniError, ValueError):
    """Input images, video or latents are unusable (wrong shape, size, channels, NaN...)."""


class BackendUnavailableError(MarDiniError, RuntimeError):
    """A requested attention backend cannot run here."""


class GenerationInterrupted(MarDiniError):
    """A generation was stopped between steps at the user's request."""


class OutputError(MarDiniError):
    """An output cannot or may not be written (it exists, the disk is full, the name is unsafe...)."""


class TrainingError(MarDiniError):
    """A training run cannot go on (its loss became NaN, its saved states are all damaged...)."""


class MemoryBudgetError(InputError):
    """A size or frame count the user chose would need more memory than this machine has."""


class ExistingRunError(OutputError, ConfigError):
    """A training --out folder already holds a run (an OutputError; also the ConfigError it always was)."""
