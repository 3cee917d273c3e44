"""Pictures through the doors of a real daemon on the tiny vision model: `agentd ask --image`,
the socket protocol (size and garbage checks), the stored history, and the text turn after."""

import asyncio
import base64
import io
import json
import socket
import time

import pytest

from agent.ipc import Client, RequestFailed, ask_sync, status_sync
from tests.daemon_proc import RealDaemon, agentd, short_home

CONFIG = """\
model:
  temperature: 0.0
  presence_penalty: 0.0
  max_tokens: 4
skills:
  enabled: []
intents:
  enabled: false
"""


def png(width=640, height=480) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (250, 180, 20)).save(out, format="PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def daemon(tiny_qwen_vl):
    home = short_home("vis-")
    config = home / "config.yaml"
    port = free_port()
    config.write_text(CONFIG + f"api:\n  enabled: true\n  port: {port}\n")
    daemon = RealDaemon(home, config, tiny_qwen_vl)
    daemon.start(timeout=180)
    deadline = time.monotonic() + 180
    while status_sync(daemon.socket, timeout=10)["warm_up"]["phase"] != "ready":  # the API answers 503 until then
        assert time.monotonic() < deadline, "the model did not warm up"
        time.sleep(0.1)
    daemon.api_url = f"http://127.0.0.1:{port}"
    daemon.api_token = (home / "api-token").read_text().strip()
    yield daemon
    daemon.close()


def test_ask_with_an_image_runs_an_image_turn_and_history_keeps_a_placeholder(daemon):
    picture = daemon.home / "parcel.png"
    picture.write_bytes(png(1280, 960))  # shrunk to vision.max_pixels: 640x480
    done = agentd("ask", "--json", "--image", str(picture), *daemon.options, "Is there a parcel?", timeout=300)
    assert done.returncode == 0, done.stderr + daemon.output()
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    assert reply["type"] == "ReplyDone" and reply["stopped_by"] in ("done", "guard"), reply
    assert reply["stats"]["prompt_tokens"] > 300  # the picture's 300 tokens were read

    async def history():
        async with await Client.connect(daemon.socket) as client:
            return await client.history()

    messages = asyncio.run(history()).messages
    assert messages[0] == {"role": "user", "content": "[image 640x480] Is there a parcel?"}, messages


def test_a_text_turn_after_an_image_turn_still_hits_the_prefix_cache(daemon):
    picture = png(320, 240)
    ask_sync(daemon.socket, "What colour is this?", images=[picture])
    after = ask_sync(daemon.socket, "Hello!")
    assert after.stats.prefix_hit and after.stats.prefix_tokens_reused > 0


def raw_send(daemon, frame: dict) -> dict:
    async def go():
        reader, writer = await asyncio.open_unix_connection(str(daemon.socket), limit=1 << 22)
        writer.write(json.dumps(frame).encode() + b"\n")
        await writer.drain()
        answer = json.loads(await reader.readline())
        writer.close()
        return answer

    return asyncio.run(go())


@pytest.mark.parametrize("image, words", [
    ("this is not base64!", "picture 1 is not valid base64"),
    (base64.b64encode(b"GIF89a but then nothing").decode(), "picture 1 is not an image"),
])
def test_garbled_pictures_on_the_socket_get_a_clear_error(daemon, image, words):
    answer = raw_send(daemon, {"v": 1, "type": "send", "id": "g1", "text": "look", "images": [image]})
    assert answer["type"] == "error" and words in answer["message"], answer


def test_too_many_or_too_big_pictures_are_refused_before_they_are_sent(daemon):
    async def send(images):
        async with await Client.connect(daemon.socket) as client:
            async for _ in client.reply("look", images=images):
                pass

    with pytest.raises(RequestFailed, match="5 pictures in one message; the daemon takes up to 4"):
        asyncio.run(send([b"x"] * 5))
    with pytest.raises(RequestFailed, match="send smaller ones"):
        asyncio.run(send([bytes(19_000_000)]))


def test_ask_names_a_missing_image_file(daemon, tmp_path):
    done = agentd("ask", "--image", str(tmp_path / "nope.png"), *daemon.options, "hi")
    assert done.returncode == 2
    assert f"agentd: cannot read the image {tmp_path / 'nope.png'}" in done.stderr


# -- the HTTP API through the real clients ----------------------------------------------------


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_openai_image_url_parts_reach_the_model(daemon):
    import openai

    client = openai.OpenAI(base_url=f"{daemon.api_url}/v1", api_key=daemon.api_token, max_retries=0, timeout=120)
    content = [{"type": "text", "text": "What is on the display?"},
               {"type": "image_url", "image_url": {"url": data_url(png())}}]
    reply = client.chat.completions.create(model="agentd", messages=[{"role": "user", "content": content}])
    assert reply.usage.prompt_tokens > 300
    with pytest.raises(openai.BadRequestError, match="must be a data: URL"):
        client.chat.completions.create(model="agentd", messages=[{"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    with pytest.raises(openai.BadRequestError, match=r"image 1 of messages\[0\] is not an image"):
        client.chat.completions.create(model="agentd", messages=[{"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": data_url(b"plain text")}}]}])


def test_ollama_images_reach_the_model(daemon):
    import ollama

    client = ollama.Client(host=daemon.api_url, headers={"Authorization": f"Bearer {daemon.api_token}"}, timeout=120)
    reply = client.chat(model="agentd", messages=[{"role": "user", "content": "Is the door open?", "images": [png(320, 240)]}])
    assert reply.prompt_eval_count > 64  # 320x240: 80 image tokens besides the words
