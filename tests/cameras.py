"""Helpers for camera tests: real pictures (Pillow), the home skill's tools, and a stand-in for
the vision hook that records what it was shown.

The stand-in takes the place of `ToolContext.vision` (the engine's `await vision(image_bytes,
question) -> str`), not of the LLM layer: it decodes the picture it is handed with Pillow, so a
test knows the tool gave the model a real image, and answers with a fixed sentence.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

SKILL_TOOLS = Path(__file__).resolve().parent.parent / "skills" / "home" / "tools.py"


def load_home_tools(name: str = "home_skill_tools_under_test_cameras"):
    """The bundled home skill's tools.py, imported from its file as the skill loader does."""
    spec = importlib.util.spec_from_file_location(name, SKILL_TOOLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def picture(width: int = 64, height: int = 48, color=(200, 40, 40), format: str = "JPEG") -> bytes:
    """A real encoded picture of one colour."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format=format)
    return out.getvalue()


@dataclass
class SeeingScript:
    """Answers every look with `answer` and records (size, colour at the centre, question)."""

    answer: str = "Yes: the garage door is open."
    seen: list = field(default_factory=list)

    async def __call__(self, image: bytes, question: str) -> str:
        with Image.open(io.BytesIO(image)) as img:
            rgb = img.convert("RGB")
            self.seen.append((rgb.size, rgb.getpixel((rgb.width // 2, rgb.height // 2)), question))
        return self.answer
