"""Applications of a trained VidStyleODE on video files: `python -m vidstyleode_jax.apps SUBCOMMAND --help`.

Modules: errors (the one exception users see), trained_run (config, checkpoint and frozen networks of a run),
inputs (video files, frame folders, images, inversions), timeline (frame numbers, seconds and model time),
regions (a pixel region or mask on the dynamics grid), renderer (the jitted encode / solve / render calls),
applications (edit, animate, interpolate, extrapolate, transfer-motion, blend-motion), session (a loaded run
turning user inputs into results, shared by the command line and the web page vidstyleode_jax.ui), outputs
(writing results), export_demo (demo videos and their inversions) and __main__ (the command line).
"""
