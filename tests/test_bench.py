"""bench --random_weights: a paper config runs without its weights, built with the published architectures.

bench defines absl flags at import, as the other entry points do, so it is imported in a subprocess of its own.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import json, sys
from vidstyleode_jax import bench, config_files
from vidstyleode_jax.errors import UserError
result = {}
for path in sys.argv[1:]:
  try:
    config = bench.with_random_weights(config_files.load(path))
    result[path] = {name: dict(config[name]) for name in ("generator", "clip", "dino")}
    result[path]["data.kind"] = config.data.kind
  except UserError as error:
    result[path] = str(error)
print(json.dumps({"published": bench.PUBLISHED_ARCHITECTURES, "configs": result}))
"""


def test_paper_configs_get_the_published_architectures_and_an_unpublished_checkpoint_is_named():
  paths = ["configs/fashion.py", "configs/ablations.py:fashion/lstm",
           "configs/ablations.py:fashion/vgg_no_consistency"]
  output = subprocess.run([sys.executable, "-c", SCRIPT, *paths], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout
  document = json.loads(output.strip().splitlines()[-1])
  result, architectures = document["configs"], document["published"]
  published = {"generator": "stylegan_human_v2_1024", "clip": "clip_vit_b32", "dino": "dino_vitb16"}
  for path in paths[:2]:
    assert result[path]["data.kind"] == "synthetic"
    for name, folder in published.items():
      for field, value in architectures[folder]["fields"].items():
        assert result[path][name][field] == value, (path, name, field)
      assert result[path][name]["checkpoint"] == ""
  assert "vgg.checkpoint=ported/vgg16 is not one of the published checkpoints" in result[paths[2]]

