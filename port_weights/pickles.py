"""Reading pickles without executing what they name (kinds stylegan2-ada and i3d).

A `RestrictedUnpickler` admits only the globals of an allow-list (and what an optional fallback admits); any other
global is refused before it is called, so nothing else in the file runs. NumPy arrays are admitted with
`NUMPY_ARRAYS`; dtypes that hold Python objects are refused.
"""

import pickle
from typing import Any, Callable, Mapping

import numpy as np

from vidstyleode_jax.errors import UserError


class RefusedGlobal(pickle.UnpicklingError):
  """The pickle names a global outside the allow-list."""


def numpy_dtype(*args) -> np.dtype:
  """`numpy.dtype` for plain numbers only: object dtypes would unpickle arbitrary objects."""
  dtype = np.dtype(*args)
  if dtype.hasobject:
    raise RefusedGlobal(f"NumPy dtype {dtype!r} holds Python objects and is not allowed")
  return dtype


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct
# The globals a pickled numpy.ndarray needs, under their NumPy 1.x and 2.x module names.
NUMPY_ARRAYS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): numpy_dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
  """Admits the globals of `allowed` ((module, name) -> object), then whatever `fallback(module, name)` returns."""

  def __init__(self, file, allowed: Mapping[tuple[str, str], Any], what: str,
               fallback: Callable[[str, str], Any] | None = None):
    super().__init__(file)
    self._allowed, self._what, self._fallback = allowed, what, fallback

  def find_class(self, module: str, name: str):
    if (module, name) in self._allowed:
      return self._allowed[(module, name)]
    found = self._fallback(module, name) if self._fallback is not None else None
    if found is None:
      raise RefusedGlobal(f"global '{module}.{name}' is not on the allow-list for a {self._what}")
    return found


def read(src: str, allowed: Mapping[tuple[str, str], Any], what: str,
         fallback: Callable[[str, str], Any] | None = None) -> Any:
  """Unpickles the file `src` through a RestrictedUnpickler; `what` names the expected content in errors.

  Raises:
    UserError: naming the file when a global is refused (nothing was executed) or the file is unreadable.
  """
  try:
    with open(src, "rb") as f:
      return RestrictedUnpickler(f, allowed, what, fallback).load()
  except RefusedGlobal as error:
    raise UserError(f"{src}: refused to unpickle: {error}; nothing in the file was executed") from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError) as error:
    raise UserError(f"{src}: not a readable {what} (truncated or corrupt?): "
                    f"{type(error).__name__}: {error}") from None
