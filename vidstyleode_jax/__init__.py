"""VidStyleODE in JAX and Flax."""

import warnings

# ffmpeg (video files) runs in child processes started with fork + exec, after JAX has started its threads. The
# child runs no Python code before exec, so Python's warning about forking a multithreaded process does not apply;
# it would only clutter the one-line error messages of the commands.
warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
