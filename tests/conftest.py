"""Shared fixtures: a smaller variant of the demo config for fast end-to-end tests, and one run trained with it.

JAX's persistent compilation cache is turned on for the whole session, subprocesses included (they inherit the
environment): the same train step, generator or app program compiled by several tests is compiled once. It keeps
every program, however quick to compile: the random init of the frozen networks runs op by op, hundreds of small
programs that each new trainer process (the soak starts eleven) would otherwise compile again (17.6 s of one
start-up in a profile).
"""

import ctypes
import dataclasses
import gc
import json
import os
import socket
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
sys.path.insert(0, REPO)

from configs import demo  # noqa: E402


def tiny_config(num_steps=3):
  """The demo model on fewer, shorter videos; samples and evaluation only at the end."""
  config = demo.get_config()
  config.data.update(num_train_videos=8, num_eval_videos=4, frames_per_video=12, batch_size=4)
  config.train.update(num_steps=num_steps, log_every=1, checkpoint_every=num_steps, sample_every=num_steps)
  return config


SMALL = {  # config fields on top of tiny_config: one or two layers per network, for tests that start many trainers
    "clip.vision_depth": 1, "clip.text_depth": 1, "dino.depth": 2, "dino.key_layer": 1, "dino.cls_layer": 0,
    "modulation.num_self_layers": 1, "modulation.num_cross_layers": 1, "mapper.group_depths": (1, 1, 1),
}


def small_config(num_steps=3, **train_fields):
  """tiny_config with SMALL's networks and `train_fields` set: a smaller train step to trace and compile."""
  config = tiny_config(num_steps)
  for field, value in SMALL.items():
    section, name = field.split(".")
    config[section][name] = value
  config.train.update(train_fields)
  return config


def training_records(workdir):
  """The training lines (those with loss/total) of WORKDIR/metrics.jsonl, in file order; a half-written last line
  (a run killed mid-write) is left out."""
  from vidstyleode_jax import files

  path = os.path.join(workdir, files.METRICS_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if "loss/total" in record:
        records.append(record)
  return records


def free_port():
  """A TCP port on 127.0.0.1 that nothing listens on right now."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


@pytest.fixture(autouse=True, scope="module")
def free_compiled_programs():
  """Drops each test module's compiled programs when it ends: kept all session long, they pass 15 GB.

  Programs a later module compiles again come from the persistent compilation cache.
  """
  yield
  import jax
  jax.clear_caches()
  gc.collect()
  ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand the freed heap back to the system


# Scheduling on CI's 2 workers (README's `-n 2`; `--dist loadgroup --no-loadscope-reorder` in pyproject.toml's
# addopts). Each unit runs whole on one worker, so that module- and session-scoped fixtures are built once: a module
# is a unit, and the modules that share the session's demo_run form one. Units start longest first, so that the
# suite does not end waiting on one long unit that started last.
DEMO_RUN_UNIT = "demo_run"
DEMO_RUN_MODULES = ("test_apps.py", "test_evaluate.py", "test_ui.py")
LONGEST_UNITS_FIRST = ("test_paper_path.py", "test_multiprocess.py", DEMO_RUN_UNIT, "test_long_runs.py",
                       "test_ablations.py", "test_training.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
  """With --dist loadgroup, stops the run where a worker's units did not take (each node id carries its unit after
  an '@'): the suite would still pass, building every shared fixture on both workers."""
  lost = [nodeid for nodeid in ids if "@" not in nodeid]
  if node.config.getvalue("dist") == "loadgroup" and lost:
    pytest.exit(f"--dist loadgroup did not group {lost[0]} (and {len(lost) - 1} more): pytest-xdist cannot mark this "
                f"pytest's node ids (pyproject.toml pins pytest below 9.2)", returncode=pytest.ExitCode.USAGE_ERROR)


def scheduling_unit(item):
  module = os.path.basename(str(item.path))
  return DEMO_RUN_UNIT if module in DEMO_RUN_MODULES else module


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
  rank = {unit: i for i, unit in enumerate(LONGEST_UNITS_FIRST)}
  for item in items:
    item.add_marker(pytest.mark.xdist_group(scheduling_unit(item)))
  items.sort(key=lambda item: rank.get(scheduling_unit(item), len(rank)))  # stable: the rest keep their order


def pytest_runtest_teardown(item):
  """With VIDSTYLEODE_TEST_MEMORY=FILE, appends each test's peak resident memory (GiB) of this process to FILE."""
  path = os.environ.get("VIDSTYLEODE_TEST_MEMORY")
  if path:
    with open("/proc/self/status") as f:
      peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(path, "a") as f:
      f.write(f"{peak_kib / 2**20:.2f}\t{os.getpid()}\t{item.nodeid}\n")


@pytest.fixture
def config():
  return tiny_config()


DEMO_EXPORT_FPS = 8.0


@dataclasses.dataclass(frozen=True)
class DemoRun:
  """A tiny run trained for 2 steps, and 2 of its held-out videos exported by `apps export-demo` (at 8 fps).

  Shared by the whole session: treat it as read-only (copy the workdir before changing anything in it).
  params: the trained params that train.train returned (not restored from the checkpoint).
  """

  config: object
  workdir: str
  export: str
  params: dict

  def path(self, name):
    """A file that export-demo wrote: demo_K.mp4, demo_K.npy, demo_K_frame0.png, ..."""
    return os.path.join(self.export, name)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
  from vidstyleode_jax import train
  from vidstyleode_jax.apps import __main__ as apps_cli

  root = tmp_path_factory.mktemp("demo_run")
  config = tiny_config(num_steps=2)
  state, _ = train.train(config, str(root / "run"), progress=False)
  assert apps_cli.main(["export-demo", "--workdir", str(root / "run"), "--out", str(root / "export"), "--count", "2",
                        "--fps", str(DEMO_EXPORT_FPS), "--no-progress"]) == 0
  return DemoRun(config, str(root / "run"), str(root / "export"), state.params)
