"""Every fenced ``bash`` and ``python`` block of README.md and docs/*.md runs as written, in order, in a fresh
folder per file, so an example that drifts from the code fails CI.

A block is run unless a comment on the lines just above its fence says otherwise, visibly in the Markdown
source (several such lines may stack):

- ``<!-- docs-test: skip: REASON -->``: not run here (it installs packages, needs your own model...); the
  reason is required;
- ``<!-- docs-test: quick: train => --epochs 1 ...; train --resume => --epochs 2; compare-train => --steps 2 -->``:
  a ``segparity`` command whose words include those before ``=>`` (the longest such match) gets the flags
  after it appended, so minutes of training take seconds; the flags must also be written in the page's
  text, where a reader sees them;
- ``<!-- docs-test: data: ph2 DIR -->`` / ``data: mads DIR``: a small dataset in the real layout is made at
  ``DIR`` first (``tests/test_data_files.py``), for blocks that read one; ``data: torchvision NAME.pth``: a seeded
  ``state_dict`` of torchvision's model ``NAME`` (its keys and shapes, 21 classes; a classifier such as
  ``resnet50``: 1000 classes), never a download;
- ``<!-- docs-test: slow: REASON -->`` on a page's first block: the whole page (its blocks share a namespace) runs
  in the slow set (``.ci/run``'s slow step), not in the README's test command.

``python`` blocks of one page share a namespace (a later block may use an earlier block's names).
``bash`` blocks may hold ``segparity`` commands only; each runs in this process (``segparity.cli.main``) and
must exit with status 0.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from segparity import cli
from tests.test_data_files import make_mads, make_ph2

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
MARKER = re.compile(r"<!-- docs-test: (skip|quick|data|slow): (.+?) -->\s*$")


def blocks(page: Path) -> list[dict]:
    """The page's fenced bash/python blocks in order: language, code, first line number and markers."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) not in ("bash", "python"):
            continue
        markers = {}
        for line in reversed(text[:match.start()].rstrip("\n").split("\n")):
            marker = MARKER.match(line.strip())
            if not marker:
                break
            markers[marker.group(1)] = marker.group(2).strip()
        found.append({"language": match.group(1), "code": match.group(2),
                      "line": text[:match.start()].count("\n") + 2, "markers": markers})
    return found


RUNNABLE = [page for page in PAGES if blocks(page)]
SLOW = [page for page in RUNNABLE if "slow" in blocks(page)[0]["markers"]]


def _quick_flags(text: str) -> list[tuple[list[str], list[str]]]:
    """``"train => --epochs 1; compare-train => --steps 2"`` -> [(words to match, flags to append)]."""
    rules = []
    for part in text.split(";"):
        match, arrow, flags = part.partition("=>")
        assert arrow and match.split() and flags.split(), f"quick: expected 'WORDS => FLAGS', got {part!r}"
        rules.append((match.split(), shlex.split(flags)))
    return rules


def _commands(code: str) -> list[list[str]]:
    """The commands of a bash block: comments dropped, continuation lines joined, split as the shell would."""
    joined = re.sub(r"\\\n", " ", code)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def _run_bash(code: str, quick: list[tuple[list[str], list[str]]], where: str) -> None:
    for words in _commands(code):
        assert words[0] == "segparity", (f"{where}: a runnable bash block may hold segparity commands only, got "
                                         f"{shlex.join(words)!r}; mark the block 'docs-test: skip: REASON'")
        matching = [(len(match), flags) for match, flags in quick if all(w in words for w in match)]
        argv = words[1:] + (max(matching)[1] if matching else [])
        status = cli.main(argv)
        assert status == 0, f"{where}: `{shlex.join(['segparity', *argv])}` exited with status {status}"


def _make_data(spec: str, folder: Path) -> None:
    kind, target = spec.split()
    if kind == "ph2":
        make_ph2(folder / target, ids=tuple(f"IMD{i:03d}" for i in range(2, 12)))
    elif kind == "mads":
        make_mads(folder / target, names=tuple(f"p_{i:03d}" for i in range(10)))
    elif kind == "torchvision":  # NAME.pth: a seeded state_dict in torchvision's keys, of NAME's 21-class model
        import torch

        from segmentation_torch import build_model
        from segmentation_torch.backbones.mobilenetv3 import MobileNetV3Large
        from segmentation_torch.backbones.resnet import ResNet
        from segmentation_torch.backbones.vgg import VGG16
        from tests.torchvision_oracle import seed_model

        name = Path(target).stem
        classifiers = {**{f"resnet{d}": lambda d=d: ResNet(d) for d in (18, 34, 50, 101)},
                       "vgg16": lambda: VGG16(False), "vgg16_bn": lambda: VGG16(True),
                       "mobilenet_v3_large": MobileNetV3Large}
        model = classifiers[name]() if name in classifiers else build_model(name)
        torch.save(seed_model(model).state_dict(), folder / target)
    else:
        raise AssertionError(f"data: unknown dataset {kind!r} (ph2, mads or torchvision)")


@pytest.mark.parametrize("page", [pytest.param(p, marks=[pytest.mark.slow] if p in SLOW else []) for p in RUNNABLE],
                         ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_every_example_runs_as_written(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_example"}
    visible = re.sub(r"<!--.*?-->", "", page.read_text(), flags=re.S)
    ran = 0
    for block in blocks(page):
        where = f"{page.relative_to(ROOT)}:{block['line']}"
        markers = block["markers"]
        if "skip" in markers:
            assert len(markers["skip"]) > 10, f"{where}: a skipped block needs its reason written beside it"
            continue
        quick = _quick_flags(markers["quick"]) if "quick" in markers else []
        for _, flags in quick:
            assert shlex.join(flags) in visible, f"{where}: the quick flags {shlex.join(flags)!r} must be shown in the page"
        if "data" in markers:
            _make_data(markers["data"], tmp_path)
        if block["language"] == "python":
            exec(compile(block["code"], where, "exec"), namespace)
        else:
            _run_bash(block["code"], quick, where)
        ran += 1
    capsys.readouterr()
    assert ran, f"{page.relative_to(ROOT)}: no block ran"


def test_every_marker_is_well_formed_and_attached_to_a_block():
    """A misspelt marker would silently run (or skip) the wrong block: every docs-test comment must parse and
    sit on the line just above a bash or python fence."""
    for page in PAGES:
        text = page.read_text()
        comments = re.findall(r"<!-- docs-test.*?-->", text, flags=re.S)
        attached = sum(len(b["markers"]) for b in blocks(page))
        assert len(comments) == attached, f"{page.name}: {len(comments)} docs-test comments, {attached} attached to a block"
        assert all("slow" not in b["markers"] for b in blocks(page)[1:]), \
            f"{page.name}: 'slow' marks a whole page, on its first block only"
