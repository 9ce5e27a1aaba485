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
