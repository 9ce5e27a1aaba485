"""The error the applications raise for a user mistake; the command line prints its message and exits with 1."""


class AppError(Exception):
  """A bad input (missing or unreadable file, bad flag value, incompatible checkpoint); the message says which."""
