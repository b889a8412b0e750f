"""Small generated portraits: a face whose colours and geometry are drawn from the person's id and the seed,
so every person has a distinct, reproducible picture (used as the visual modality of mini-CLEAR)."""

from __future__ import annotations

import hashlib
import random

from PIL import Image, ImageDraw


def draw_portrait(person: dict, size: int, seed: int) -> Image.Image:
    digest = hashlib.sha256(f"{seed}:{person['id']}".encode()).digest()
    rng = random.Random(digest)
    s = size / 32
    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    skin = rng.choice([(241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172)])
    hair = tuple(rng.randrange(200) for _ in range(3))
    face_w, face_h = rng.uniform(9, 12) * s, rng.uniform(11, 14) * s
    cx, cy = size / 2 + rng.uniform(-2, 2) * s, size / 2 + 2 * s
    draw.ellipse([cx - face_w, cy - face_h + 4 * s, cx + face_w, cy + face_h], fill=hair)
    draw.ellipse([cx - face_w + 2 * s, cy - face_h + 7 * s, cx + face_w - 2 * s, cy + face_h - 1 * s], fill=skin)
    eye_dx, eye_y = rng.uniform(2.5, 4.5) * s, cy + rng.uniform(-1, 1) * s
    eye = tuple(rng.randrange(120) for _ in range(3))
    for sign in (-1, 1):
        draw.ellipse([cx + sign * eye_dx - s, eye_y - s, cx + sign * eye_dx + s, eye_y + s], fill=eye)
    mouth_y, mouth_w = cy + rng.uniform(4, 6) * s, rng.uniform(2, 4) * s
    draw.line([cx - mouth_w, mouth_y, cx + mouth_w, mouth_y], fill=(150, 40, 40), width=max(1, int(s)))
    return img
