"""Turning a real env's observation into V's 64×64×3 uint8 frame.

Collection and the transfer wrapper must preprocess identically, or a dream-trained policy sees a
different world in reality. The rule is therefore data (`FramePreprocessing`), stored in every
dataset manifest and world bundle, and applied by one function.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

FRAME_SIZE = 64
"""V's input is FRAME_SIZE × FRAME_SIZE × 3 (Ha & Schmidhuber 2018, §A.1)."""

# Known envs: CarRacing's bottom 12 rows are the dashboard (speed, ABS, steering bars); the paper
# crops them away. ViZDoom's `screen` is resized whole.
KNOWN_RULES: dict[str, dict[str, Any]] = {
    "CarRacing-v3": {"image_key": None, "crop": [0, 84, 0, 96]},
    "VizdoomTakeCover-v1": {"image_key": "screen", "crop": None},
}


@dataclass(frozen=True)
class FramePreprocessing:
    """How one real observation becomes one V frame: pick, crop, resize (bilinear, PIL)."""

    image_key: str | None = None
    """Key of the image in a Dict observation (ViZDoom: "screen"); None for a plain Box image."""
    crop: tuple[int, int, int, int] | None = None
    """(top, bottom, left, right) pixel bounds kept before resizing; None keeps the whole image."""
    size: int = FRAME_SIZE
    """Side of the square output frame."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop"] = list(self.crop) if self.crop is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FramePreprocessing:
        crop = d.get("crop")
        return cls(
            image_key=d.get("image_key"),
            crop=tuple(int(c) for c in crop) if crop is not None else None,  # type: ignore[arg-type]
            size=int(d.get("size", FRAME_SIZE)),
        )

    def __call__(self, obs: Any) -> np.ndarray:
        """One observation → (size, size, 3) uint8."""
        img = obs[self.image_key] if self.image_key is not None else obs
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"expected an H×W×C image observation, got shape {img.shape}; "
                "dreamgym needs an env with image observations (set image_key for Dict observations)"
            )
        if self.crop is not None:
            top, bottom, left, right = self.crop
            img = img[top:bottom, left:right]
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        elif img.shape[-1] == 4:
            img = img[..., :3]
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        if img.shape[0] != self.size or img.shape[1] != self.size:
            img = np.asarray(
                Image.fromarray(img).resize((self.size, self.size), Image.Resampling.BILINEAR)
            )
        return np.ascontiguousarray(img, dtype=np.uint8)


def _is_image_box(space: gym.Space) -> bool:
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 3
        and space.shape[-1] in (1, 3, 4)
        and space.shape[0] >= 8
        and space.shape[1] >= 8
    )


def preprocessing_for(env_id: str, observation_space: gym.Space) -> FramePreprocessing:
    """The documented rule for `env_id`, or the generic one: find the image, resize it whole."""
    if env_id in KNOWN_RULES:
        return FramePreprocessing.from_dict(KNOWN_RULES[env_id])
    if _is_image_box(observation_space):
        return FramePreprocessing()
    if isinstance(observation_space, gym.spaces.Dict):
        keys = [k for k, s in observation_space.spaces.items() if _is_image_box(s)]
        if keys:
            key = "screen" if "screen" in keys else ("pixels" if "pixels" in keys else keys[0])
            return FramePreprocessing(image_key=key)
    raise ValueError(
        f"{env_id} has observation space {observation_space}, which holds no H×W×C image; "
        "dreamgym learns worlds from image observations (wrap the env with "
        "gymnasium.wrappers.AddRenderObservation(render_only=True) to use its rendering)"
    )
