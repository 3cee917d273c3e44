"""Images from the doors: size limits, shrinking, clear errors for bad files, and the one
line a person sees when the vision extra is not installed."""

import base64
import io
import subprocess
import sys
from pathlib import Path

import pytest

from agent.images import ImageError, decode_base64_image, picture_from_bytes, picture_from_file, shrunk_size

REPO = Path(__file__).resolve().parent.parent


def jpeg(width, height) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(out, format="JPEG")
    return out.getvalue()


def test_a_big_photo_is_shrunk_to_max_pixels_keeping_its_shape(tmp_path):
    path = tmp_path / "door.jpg"
    path.write_bytes(jpeg(1920, 1080))
    picture = picture_from_file(path, max_pixels=307200, max_bytes=10**7)
    assert picture.width * picture.height <= 307200
    assert abs(picture.width / picture.height - 1920 / 1080) < 0.01
    assert picture.placeholder == f"[image {picture.width}x{picture.height}]"


def test_a_small_picture_is_not_enlarged():
    assert shrunk_size(320, 240, 307200) == (320, 240)
    assert picture_from_bytes(jpeg(320, 240), "x", max_pixels=307200, max_bytes=10**7).width == 320


@pytest.mark.parametrize("content, words", [
    (b"this is a shopping list, not a picture", "not an image"),
    (jpeg(64, 64)[:200], "damaged image"),
])
def test_a_file_that_is_not_a_usable_image_is_named_in_the_error(tmp_path, content, words):
    path = tmp_path / "boiler.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=words) as caught:
        picture_from_file(path, max_pixels=307200, max_bytes=10**7)
    assert str(path) in str(caught.value)


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.jpg"
    path.write_bytes(jpeg(640, 480))
    with pytest.raises(ImageError, match="over vision.max_image_bytes"):
        picture_from_file(path, max_pixels=307200, max_bytes=100)


def test_missing_files_and_folders_get_their_own_messages(tmp_path):
    with pytest.raises(ImageError, match="cannot read the image .*nope.png"):
        picture_from_file(tmp_path / "nope.png", max_pixels=307200, max_bytes=10**7)
    with pytest.raises(ImageError, match="is a folder"):
        picture_from_file(tmp_path, max_pixels=307200, max_bytes=10**7)


def test_base64_and_data_urls_decode_and_garbage_is_refused():
    data = jpeg(32, 32)
    encoded = base64.b64encode(data).decode()
    assert decode_base64_image(encoded, "image 1", max_bytes=10**6) == data
    assert decode_base64_image("data:image/jpeg;base64," + encoded, "image 1", max_bytes=10**6) == data
    with pytest.raises(ImageError, match="image 1 is not valid base64"):
        decode_base64_image("not base64 at all!", "image 1", max_bytes=10**6)
    with pytest.raises(ImageError, match="over vision.max_image_bytes"):
        decode_base64_image(encoded, "image 1", max_bytes=10)


BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlx_vlm", "PIL"):
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def test_without_the_vision_extra_an_image_gets_one_line_saying_how_to_add_it(tmp_path, tiny_qwen_vl):
    """A vision checkpoint still serves text turns; an image turn says what to install."""
    script = BLOCKED + f"""
import asyncio
from agent.images import ImageError, picture_from_bytes
from agent.llm.mlx_engine import MLXEngine
from agent.tools import ToolRegistry
from agent.turn import Agent
try:
    picture_from_bytes(b"abc", "photo.jpg", max_pixels=1000, max_bytes=1000)
except ImageError as exc:
    print("IMAGE:", exc)
engine = MLXEngine({str(tiny_qwen_vl)!r})
print("SEES:", engine.vision is not None)
print("WHY:", engine.cannot_see())
async def turn():
    agent = Agent(llm=engine, registry=ToolRegistry(), system_prompt="hi")
    from agent.llm.types import Picture
    return [e async for e in agent.respond("look", images=[Picture(b"x", 1, 1)])][-1]
done = asyncio.run(turn())
print("REPLY:", done.stopped_by, done.text)
engine.close()
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMAGE: cannot read photo.jpg: images need Pillow and mlx-vlm; install the vision extra: pip install 'agentd[vision]'" in out
    assert "SEES: False" in out
    assert "WHY: images need mlx-vlm, which is not installed (mlx_vlm): install the vision extra: pip install 'agentd[vision]'" in out
    assert "REPLY: error Cannot look at the image: images need mlx-vlm" in out
