"""VidStyleODE in JAX and Flax.

EQX_ON_ERROR=nan (unless the environment sets it): a failed runtime check of equinox inside diffrax yields NaN
instead of raising through a host callback. The train step's non-finite guard then skips that step, and the
compiled programs, free of host callbacks, can be kept in JAX's persistent compilation cache (a restarted run does
not compile them again). Equinox reads the variable when it is first imported, which is after this package.
"""

import os

os.environ.setdefault("EQX_ON_ERROR", "nan")
