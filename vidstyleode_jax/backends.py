"""What the project chooses per XLA backend: compiler options, and how convolutions inside loops are written.

Measured on XLA:CPU (jaxlib 0.10, see `python -m vidstyleode_jax.bench --part=trainable`):
* Inside a while loop (`lax.scan`, the ODE solver's steps) XLA:CPU lowers the backward convolutions to a generic
  loop nest, far slower than the same maths as one matmul over the k*k shifted copies of the input (im2col): with
  XLA's convolutions the trainable step at the fashion sizes takes about 4x as long. GPU and TPU keep XLA's
  convolution, their natural program.
* XLA:CPU sends dots and convolutions to YNNPACK by default. For convolutions on the frame encoder's shapes that
  path is about 2x slower than XLA's own (forward + backward), so CPU programs send YNNPACK dots and sums only
  (turning it off for dots as well makes the trainable step about 25% slower). Without YNNPACK sums, XLA:CPU
  writes a large sum such as a bias gradient over 24 frames of 128x96 as a windowed reduction: 25 ms for each of
  the frame encoder's first biases, against 3.7 ms for the same sum in YNNPACK, and the trainable step took
  3.5-10% less with YNNPACK sums (docs/performance.md §1); YNNPACK's element-wise fusions made it 31% slower. The
  option is a list of the fusion kinds that go to YNNPACK; it is the compile-time form of
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=...
* XLA writes the input gradient of a stride-2 convolution as a convolution of the zero-dilated output gradient;
  on XLA:CPU that took 75 ms of the frame encoder's first block (batch 3 x 8 frames at 128x96), against 33 ms for
  the same sums grouped by output phase (models/strided_conv.py). CPU programs use the phases; GPU and TPU keep
  XLA's form.
Every `jax.jit` of a training or inference program passes `compiler_options()`.
"""

import jax

CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


def _backend(backend: str | None) -> str:
  return backend or jax.default_backend()


def compiler_options(backend: str | None = None) -> dict[str, str]:
  """XLA compiler options for `backend` (default: JAX's default backend)."""
  return dict(CPU_COMPILER_OPTIONS) if _backend(backend) == "cpu" else {}


def convolutions_as_matmul(backend: str | None = None) -> bool:
  """Whether the k x k convolutions that run inside loops are written as im2col matmuls on `backend`."""
  return _backend(backend) == "cpu"


def strided_input_gradient_by_phases(backend: str | None = None) -> bool:
  """Whether stride-2 convolutions take their input gradient by output phases (models/strided_conv.py) on `backend`."""
  return _backend(backend) == "cpu"
