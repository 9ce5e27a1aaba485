"""VidStyleODE in JAX and Flax.

EQX_ON_ERROR=nan (unless the environment sets it): a failed runtime check of equinox inside diffrax yields NaN
instead of raising through a host callback. The train step's non-finite guard then skips that step, and the
compiled programs, free of host callbacks, can be kept in JAX's persistent compilation cache (a restarted run does
not compile them again). Equinox reads the variable when it is first imported, which is after this package.
"""

import os
import warnings

os.environ.setdefault("EQX_ON_ERROR", "nan")

# ffmpeg (video files) runs in child processes started with fork + exec, after JAX has started its threads. The
# child runs no Python code before exec, so Python's warning about forking a multithreaded process does not apply;
# it would only clutter the one-line error messages of the commands.
warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
