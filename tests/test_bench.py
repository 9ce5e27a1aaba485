"""bench --random_weights: a paper config runs without its weights, built with the published architectures.

bench defines absl flags at import, as the other entry points do, so it is imported in a subprocess of its own.
"""

import json
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = """
import json, sys
from vidstyleode_jax import bench, config_files, config_validation
from vidstyleode_jax.errors import UserError
result = {}
for path in sys.argv[1:]:
  try:
    config = config_validation.resolve(bench.with_random_weights(config_files.load(path)))
    result[path] = {name: dict(config[name]) for name in ("generator", "clip", "dino")}
    result[path]["data.kind"] = config.data.kind
  except UserError as error:
    result[path] = str(error)
print(json.dumps(result))
"""


# The published checkpoints the paper configs name, as their architectures are known (StyleGAN-Human v2 1024x512,
# OpenAI CLIP ViT-B/32, DINO ViT-B/16).
EXPECTED = {
    "generator": dict(resolution=1024, aspect=2, style_dim=512, n_mlp=8, conv_clamp=256.0),
    "clip": dict(embed_dim=512, vision_patch_size=32, vision_width=768, vision_depth=12, context_length=77),
    "dino": dict(patch_size=16, width=768, depth=12, num_heads=12),
}


def test_paper_configs_get_the_published_architectures_and_an_unpublished_checkpoint_is_named():
  paths = ["configs/fashion.py", "configs/ablations.py:fashion/lstm",
           "configs/ablations.py:fashion/vgg_no_consistency"]
  output = subprocess.run([sys.executable, "-c", SCRIPT, *paths], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout
  result = json.loads(output.strip().splitlines()[-1])
  for path in paths[:2]:
    assert result[path]["data.kind"] == "synthetic"
    for name, fields in EXPECTED.items():
      assert {field: result[path][name][field] for field in fields} == fields, (path, name)
      assert result[path][name]["checkpoint"] == ""
  assert "vgg.checkpoint=ported/vgg16 is not one of the published checkpoints" in result[paths[2]]


def test_compare_official_refuses_a_folder_without_the_official_modules_in_one_line(tmp_path):
  """Smoke test of the refusal: the official modules are imported from the user's clone, which CI does not have."""
  (tmp_path / "src" / "modules").mkdir(parents=True)
  (tmp_path / "src" / "modules" / "minigpt.py").write_text("")
  result = subprocess.run(
      [sys.executable, "-m", "vidstyleode_jax.bench", "--config=configs/fashion.py", "--random_weights",
       "--part=trainable", f"--compare_official={tmp_path}"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      f"bench: error: --compare_official={tmp_path}: src/modules/video_encoder.py, src/modules/mapper.py not found; "
      "expected a clone of https://github.com/MoayedHajiAli/VidStyleODE-official")


FLOPS_SCRIPT = """
import json, jax, jax.numpy as jnp
from vidstyleode_jax import bench
x, w = jnp.ones((1, 16, 12, 8)), jnp.ones((3, 3, 8, 5))
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC")))
matmul = jax.jit(lambda a, b: a @ b)
figures = {}
for name, fn, args in (("conv", conv, (x, w)), ("matmul", matmul, (jnp.ones((64, 32)), jnp.ones((32, 48))))):
  lowered = fn.lower(*args)
  figures[name] = bench.analysis(lowered, lowered.compile())["xla_flops_per_step"]
figures["utilisation"] = bench.utilisation(4e12, 2.0, peak_tflops=8.0)
print(json.dumps(figures))
"""


def test_flop_count_is_the_program_as_written_and_utilisation_its_share_of_the_peak():
  """The FLOPs bench divides by the step time are 2 per multiply-add of the program as written (here a 3x3
  convolution and a matmul, counted by hand). On CPU the compiled program counts the same; the GPU's compiled count
  that leaves out library calls (docs/performance.md §4) is not reachable from CI."""
  output = subprocess.run([sys.executable, "-c", FLOPS_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout
  figures = json.loads(output.strip().splitlines()[-1])
  # SAME padding: a tap that falls on the zero border is not a product. Per axis of n positions, 3n - 2 taps are in.
  assert figures["conv"] == 2 * (3 * 16 - 2) * (3 * 12 - 2) * 8 * 5
  assert figures["matmul"] == 2 * 64 * 32 * 48
  assert figures["utilisation"] == {"xla_TFLOP/s": 2.0, "flop_utilisation (given peak 8 TFLOP/s)": 0.25}


REFERENCES_SCRIPT = """
import json, sys
import jax, numpy as np
from vidstyleode_jax import bench, config_files, config_validation, inference, torch_references
from vidstyleode_jax.models import vidstyleode
from vidstyleode_jax.errors import UserError
config = config_validation.resolve(config_files.load("configs/demo.py"))
nets = inference.Networks.from_config(config)
inputs = bench.trainable_inputs(config, nets.frozen.generator.n_latent)
positional = [inputs[name] for name in vidstyleode.CALL_ARGUMENTS]
params = jax.jit(nets.model.init)(jax.random.key(0), *positional)
w_ours = np.asarray(jax.jit(nets.model.apply)(params, *positional)[0])
references = torch_references.Worker(config, params, inputs, True, "", 1)
(w, nfe), seconds = references.run("torch", "forward")
result = dict(params=references.params["torch"], nfe=nfe, seconds=seconds,
              error=float(np.abs(w - w_ours).max() / config.mapper.delta_scale),
              delta=float(np.abs(w_ours - inputs["content"][None, :, None]).max() / config.mapper.delta_scale))
references.close()
result["alive_after_close"] = references._process.is_alive()
try:
  torch_references.Worker(config, params, inputs, False, sys.argv[1], 1)
except UserError as error:
  result["official_error"] = str(error)
result["ours_params"] = sum(x.size for x in jax.tree.leaves(params))
print(json.dumps(result))
"""


def test_pytorch_references_run_in_a_process_of_their_own():
  """The PyTorch rewrite of the trainable path built in a worker process (as bench runs it) with our parameter
  values: it gives our W+ (its delta within 1e-4 of the delta's scale, where the delta itself is of order 1) with
  the same parameter count and both clocks reported by the worker, and a worker's error reaches the caller as
  itself."""
  missing = "/nonexistent-official-clone"
  output = subprocess.run([sys.executable, "-c", REFERENCES_SCRIPT, missing], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout
  result = json.loads(output.strip().splitlines()[-1])
  assert result["params"] == result["ours_params"]
  assert result["error"] < 1e-4 and result["delta"] > 0.1
  assert result["nfe"] > 0 and set(result["seconds"]) == {"s", "cpu_s"}
  assert not result["alive_after_close"]
  assert result["official_error"].startswith(f"--compare_official={missing}: src/modules/video_encoder.py")


STAGES_SCRIPT = """
import json
import jax, numpy as np
from vidstyleode_jax import bench, config_files, config_validation, inference
from vidstyleode_jax.models import vidstyleode
config = config_validation.resolve(config_files.load("configs/demo.py"))
nets = inference.Networks.from_config(config)
inputs = bench.trainable_inputs(config, nets.frozen.generator.n_latent)
params, programs = bench.stage_programs(nets.model, inputs)
stage_input = lambda stage: programs[stage + " forward"][1][1]
run = lambda stage, **given: np.asarray(jax.jit(programs[stage + " forward"][0])(
    params, dict(stage_input(stage), **given)))
z0 = run("encode")
z_t = run("solve", z0=z0)
w_stages = run("styled_latents", z_t=z_t)
w_model = np.asarray(jax.jit(nets.model.apply)(params, *[inputs[name] for name in vidstyleode.CALL_ARGUMENTS])[0])
fn, args, _ = programs["frame_encoder forward+backward"]
grads = jax.tree_util.tree_flatten_with_path(jax.jit(fn)(*args))[0]
print(json.dumps(dict(
    programs=sorted(programs),
    error=float(np.abs(w_stages - w_model).max()), scale=float(np.abs(w_model).max()),
    inputs_match=bool(np.array_equal(z0, stage_input("solve")["z0"])
                      and np.array_equal(z_t, stage_input("styled_latents")["z_t"])),
    nonzero={jax.tree_util.keystr(path): bool(np.any(np.asarray(g) != 0)) for path, g in grads})))
"""


def test_stages_chain_into_the_trainable_path_and_each_differentiates_its_own_params():
  """--part=stages times the trainable path's stages one by one. Chained, their outputs give the path's W+; each
  stage's input is the previous stages' output; the frame encoder's gradient reaches its own params and no others."""
  output = subprocess.run([sys.executable, "-c", STAGES_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout
  result = json.loads(output.strip().splitlines()[-1])
  assert result["programs"] == sorted(f"{stage} {kind}" for stage in ("frame_encoder", "encode", "solve",
                                                                       "styled_latents")
                                      for kind in ("forward", "forward+backward"))
  assert result["error"] <= 1e-6 * result["scale"] and result["inputs_match"]
  nonzero = result["nonzero"]
  assert nonzero and all(flag == ("'frame_encoder'" in path) for path, flag in nonzero.items()), nonzero
