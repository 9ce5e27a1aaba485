"""The one error type for user mistakes, and how every command line reports it.

A `UserError` says that an input is wrong: a missing or unreadable file, a config field that does not fit, a bad
flag value, a full disk. Its message is one line that names the file, key or field, and what was expected. Every
entry point (train, bench, prepare, evaluate, the applications, port_weights) lets it through `main` and reports it
once: `<program>: error: <message>` on stderr, exit status 1, no traceback. Any other exception is a bug and keeps its
traceback.
"""

import functools
import sys

from absl import flags


class UserError(ValueError):
  """A bad input; the message (one line) names what is wrong and what was expected."""


def one_line(text) -> str:
  """`text` with every run of whitespace (newlines included) collapsed to one space."""
  return " ".join(str(text).split())


def report(program: str, error: BaseException) -> int:
  """Prints `program: error: message` on stderr; returns the exit status 1."""
  print(f"{program}: error: {one_line(error)}", file=sys.stderr)
  return 1


def exits_on_user_error(program: str):
  """Decorates a `main(...) -> status` so that a UserError it raises is reported in one line (status 1)."""

  def decorate(main):
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
      try:
        return main(*args, **kwargs)
      except UserError as error:
        return report(program, error)

    return wrapped

  return decorate


def parse_flags(program: str, argv, flag_values=flags.FLAGS):
  """Parses `argv` into `flag_values`; a bad flag or a config file that fails to load exits 1 with one line.

  absl reports unknown flags in its own way, and an override of a config field the config lacks
  (`--config.generator.foo=1`) or a config file that raises while loading would escape as tracebacks.
  """
  try:
    return flag_values(argv)
  except flags.Error as error:
    sys.exit(report(program, f"{error} (see --help)"))
  except (AttributeError, KeyError) as error:
    field = str(error).strip("'\"")
    sys.exit(report(program, f"a --config.* flag names a field the config does not have: {field}; a ported "
                    "network's architecture fields come from its folder and cannot be set"))
  except (TypeError, ValueError, ImportError, OSError, SyntaxError) as error:
    sys.exit(report(program, f"--config: {type(error).__name__}: {error}"))


def absl_flags_parser(program: str):
  """`parse_flags` as the `flags_parser` of `absl.app.run`."""
  return lambda argv: parse_flags(program, argv)
