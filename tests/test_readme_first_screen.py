"""Every command on the README's first screen (the quick start, up to "### MovieLens-100K") is run here,
shrunk to seconds: the Hydra overrides through the real conf/ and train(), the generator at a small size,
the benchmark's command line through its own argument parser. A renamed config key, script or option in
the README fails this test."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from visrec.pipeline.training import train

from conftest import REPO, compose_train

FIRST_SCREEN_END = "### MovieLens-100K"


def first_screen_commands() -> list[str]:
    """The commands on the README's first screen: lines of its bash blocks (backslash continuations
    joined) and inline `make ...` / `.venv/bin/python ...` commands in the text."""
    text = (REPO / "README.md").read_text().split(FIRST_SCREEN_END)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line.split("#")[0].strip() for line in joined.splitlines() if line.split("#")[0].strip()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [inline for inline in re.findall(r"`([^`]+)`", prose.replace("\n", " "))
                 if inline.startswith(("make ", ".venv/bin/python ")) and not inline.endswith("...")]
    return commands


def overrides_of(command: str) -> list[str]:
    """The Hydra overrides a `make train ARGS="..."` or `.venv/bin/python train.py ...` command passes."""
    words = shlex.split(command)
    if words[:2] == ["make", "train"]:
        args = [w[len("ARGS="):] for w in words[2:] if w.startswith("ARGS=")]
        return shlex.split(args[0]) if args else []
    return words[2:]  # .venv/bin/python train.py ...


COMMANDS = first_screen_commands()


def test_the_first_screen_lists_the_two_commands_and_they_are_makefile_targets():
    assert "make train" in COMMANDS and "make test" in COMMANDS, COMMANDS
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^train: .*\n\t\$\(BIN\)/python train.py \$\(ARGS\)", makefile, flags=re.M)
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest", makefile, flags=re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("make train ARGS=")])
def test_make_train_overrides_on_the_first_screen_train(command, tmp_path):
    """`make train ARGS="..."`: the same overrides through the real config and train(), tiny data."""
    overrides = overrides_of(command)
    if not any(o.startswith(("model=", "experiment=")) for o in overrides):
        overrides = ["model=ials", *overrides]  # make train's default model (compose_train's is biased_mf)
    overrides = [o if not o.startswith("trainer.max_epochs=") else "trainer.max_epochs=3" for o in overrides]
    metrics = train(compose_train([*overrides, "trainer.max_epochs=3", "logger=none"], tmp_path))
    assert metrics and all(v == v for v in metrics.values() if isinstance(v, float))


def test_the_large_problem_commands_generate_and_train(tmp_path):
    """The generator command, then both train.py commands on what it wrote, at a small size."""
    generate = [c for c in COMMANDS if "visrec.data.synthetic_large" in c]
    trains = [c for c in COMMANDS if c.startswith(".venv/bin/python train.py")]
    assert len(generate) == 1 and len(trains) == 2, COMMANDS
    words = shlex.split(generate[0])[3:]
    out = tmp_path / "big"
    sizes = {"--users": "300", "--items": "60", "--ratings": "4000", "--out": str(out)}
    args = [sizes.get(words[i - 1], word) if i else word for i, word in enumerate(words)]
    done = subprocess.run([sys.executable, "-m", "visrec.data.synthetic_large", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "ratings.parquet").is_file()
    for number, command in enumerate(trains):
        overrides = [o.replace("big/", f"{out}/") for o in overrides_of(command)]
        if not any(o.startswith(("model=", "experiment=")) for o in overrides):
            overrides = ["model=ials", *overrides]  # train.py's default model
        cfg = compose_train([*overrides, "trainer.max_epochs=2", "logger=none", "evaluate=false"],
                            tmp_path / f"train{number}", tiny=False)
        metrics = train(cfg)
        assert metrics, command


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith(".venv/bin/python benchmarks/")])
def test_benchmark_commands_on_the_first_screen_parse(command):
    """A benchmark's command line (it prints the first screen's table; run by hand, minutes) is accepted
    by its own argument parser: the same arguments followed by --help exit 0."""
    words = shlex.split(command)[1:]
    assert (REPO / words[0]).is_file(), words[0]
    done = subprocess.run([sys.executable, *words, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
