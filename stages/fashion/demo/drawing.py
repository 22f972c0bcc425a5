"""Drawn garments for the demo benchmark: images that show their caption's attributes.

`draw_garments` paints a batch of 128x128 figures with numpy broadcasting (one
(b, 128, 128) array per shape, no per-image Python loop):
  - gender: long hair falling over narrow shoulders (lady) or short hair and broad
    shoulders (man);
  - category: a silhouette family per garment (flared knee-length dress, boxy tee,
    tank with straps, open front with lapels, hood, fur-rimmed hood, wide poncho,
    trouser legs of a jumpsuit, shorts of a romper, ...);
  - colour: the garment's fill from `PALETTE` (`fashion.data.palette`); multicolor is a
    pattern of three colours (stripes or checks);
  - sleeve: long sleeves cover the arms, short ones the upper arms, sleeveless
    garments leave the arms bare;
with seeded jitter of position, scale, shade, skin, hair and background.
The segmentation map labels what was painted: 0 background, 1 hair, 2 face (and
neck), 3 upper clothes, 4 lower clothes, 5 legs, 6 arms."""

from __future__ import annotations

import numpy as np

from fashion.data.attributes import CATEGORY, COLOR, SLEEVE
from fashion.data.palette import PALETTE

SIZE = 128

# Segmentation classes of the benchmark's `b_`.
BACKGROUND, HAIR, FACE, UPPER, LOWER, LEGS, ARMS = range(7)

# Colours a multicolor pattern is made of.
PATTERN_COLORS = ("red", "blue", "white", "yellow", "green", "pink", "orange", "purple")

# Materials: what each pixel is painted with (an index into the per-image palette).
# _INNER is a shirt under an opening (white or black), _LIGHT a white that shows on any garment.
_BG, _HAIR, _SKIN, _GARMENT, _ACCENT, _INNER, _PANTS, _FUR, _PAT1, _PAT2, _LIGHT = range(11)
_GARMENT_MATERIALS = (_GARMENT, _PAT1, _PAT2)

_SKIN_TONES = np.array(
    [(0.96, 0.82, 0.71), (0.90, 0.72, 0.58), (0.76, 0.57, 0.42), (0.55, 0.38, 0.26)], np.float32
)
_HAIR_COLORS = np.array(
    [(0.10, 0.07, 0.05), (0.30, 0.18, 0.09), (0.55, 0.36, 0.18), (0.16, 0.14, 0.13)], np.float32
)
_PANTS_COLORS = np.array([(0.18, 0.23, 0.38), (0.15, 0.15, 0.17), (0.33, 0.33, 0.36)], np.float32)

# Silhouette of each category: hem (figure units from the top, the image is ~128 high),
# extra half-width at the hem, waist pinch for ladies, neckline, what goes below,
# and the details drawn on top.
_NECK_CREW, _NECK_V, _NECK_SCOOP, _NECK_BOAT, _NECK_TURTLE = range(5)
_BELOW_PANTS, _BELOW_LEGS, _BELOW_GARMENT_PANTS, _BELOW_GARMENT_SHORTS = range(4)
_SHAPES: dict[str, dict[str, float]] = {
    #          hem  flare pinch neck         below
    "blazer": dict(hem=90, flare=3, pinch=3, neck=_NECK_CREW),
    "blouse": dict(hem=86, flare=11, pinch=5, neck=_NECK_V),
    "bomber": dict(hem=76, flare=1, pinch=0, neck=_NECK_CREW),
    "cardigan": dict(hem=102, flare=3, pinch=2, neck=_NECK_V),
    "henley": dict(hem=88, flare=0, pinch=2, neck=_NECK_CREW),
    "hoodie": dict(hem=84, flare=2, pinch=0, neck=_NECK_CREW),
    "jacket": dict(hem=84, flare=2, pinch=1, neck=_NECK_CREW),
    "jersey": dict(hem=82, flare=1, pinch=0, neck=_NECK_V),
    "parka": dict(hem=98, flare=5, pinch=0, neck=_NECK_CREW),
    "poncho": dict(hem=84, flare=0, pinch=0, neck=_NECK_CREW),
    "sweater": dict(hem=88, flare=3, pinch=0, neck=_NECK_TURTLE),
    "tank": dict(hem=80, flare=1, pinch=4, neck=_NECK_SCOOP),
    "tee": dict(hem=82, flare=1, pinch=0, neck=_NECK_CREW),
    "top": dict(hem=78, flare=14, pinch=5, neck=_NECK_BOAT),
    "coat": dict(hem=110, flare=7, pinch=2, neck=_NECK_CREW),
    "dress": dict(hem=104, flare=16, pinch=5, neck=_NECK_SCOOP, below=_BELOW_LEGS),
    "jumpsuit": dict(hem=76, flare=0, pinch=4, neck=_NECK_V, below=_BELOW_GARMENT_PANTS),
    "kimono": dict(hem=98, flare=4, pinch=0, neck=_NECK_V),
    "romper": dict(hem=76, flare=0, pinch=4, neck=_NECK_SCOOP, below=_BELOW_GARMENT_SHORTS),
}


def _category_table(key: str, default: float = 0.0) -> np.ndarray:
    """One silhouette value per category code (index 0 unused)."""
    table = np.full(max(CATEGORY) + 1, default, np.float32)
    for code, name in CATEGORY.items():
        table[code] = _SHAPES[name].get(key, default)
    return table


_HEM, _FLARE, _PINCH = (_category_table(k) for k in ("hem", "flare", "pinch"))
_NECK = _category_table("neck").astype(np.int8)
_BELOW = _category_table("below", _BELOW_PANTS).astype(np.int8)
_COLOR_RGB = np.zeros((max(COLOR) + 1, 3), np.float32)
for _code, _name in COLOR.items():
    _COLOR_RGB[_code] = PALETTE.get(_name, (0.5, 0.5, 0.5))
_MULTICOLOR = next(c for c, n in COLOR.items() if n == "multicolor")
_PATTERN_RGB = np.array([PALETTE[n] for n in PATTERN_COLORS], np.float32)
_SLEEVE_NAME = {code: name for code, name in SLEEVE.items()}


def _ellipse(u: np.ndarray, v: np.ndarray, cu, cv, ru, rv) -> np.ndarray:
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def _col(x: np.ndarray) -> np.ndarray:
    """A per-image value as (b, 1, 1) for broadcasting against (b, H, W)."""
    return np.asarray(x, np.float32)[:, None, None]


def draw_garments(
    gender: np.ndarray,
    color: np.ndarray,
    sleeve: np.ndarray,
    category: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one figure per row of codes (gender 0-based, others 1-based, as in the benchmark).

    Returns images float32 (b, 128, 128, 3) RGB in [0, 1] and segmentation uint8
    (b, 128, 128). The same codes and generator state give the same images.
    """
    gender, color, sleeve, category = (np.asarray(a).astype(np.int64).ravel() for a in
                                       (gender, color, sleeve, category))  # fmt: skip
    b = len(gender)
    male = gender == 1

    # Seeded jitter: position, scale, body size, colours.
    cx = rng.uniform(-7, 7, b) + SIZE / 2
    top = rng.uniform(-4, 3, b)
    scale = rng.uniform(0.98, 1.12, b)
    shoulder = np.where(male, 24.0, 19.5) + rng.uniform(-1.2, 1.2, b)
    unspecified = sleeve == next(c for c, n in SLEEVE.items() if n == "unspecified")
    # an unspecified sleeve is still some sleeve: long or short, at random
    sleeve_kind = np.where(unspecified, rng.integers(1, 3, b), sleeve)
    skirt = ~male & (rng.random(b) < 0.4)
    shade = rng.uniform(0.93, 1.05, b)[:, None]
    pattern_kind = rng.integers(0, 3, b)
    pattern_period = rng.uniform(10.0, 16.0, b)
    pattern_cols = np.stack([rng.permutation(len(PATTERN_COLORS))[:3] for _ in range(b)])
    palette = np.zeros((b, 11, 3), np.float32)
    palette[:, _BG] = rng.uniform(0.84, 0.95, (b, 1)) + rng.uniform(-0.02, 0.02, (b, 3))
    palette[:, _HAIR] = _HAIR_COLORS[rng.integers(0, len(_HAIR_COLORS), b)]
    palette[:, _SKIN] = _SKIN_TONES[rng.integers(0, len(_SKIN_TONES), b)]
    garment = np.where(
        (color == _MULTICOLOR)[:, None], _PATTERN_RGB[pattern_cols[:, 0]], _COLOR_RGB[color]
    )
    palette[:, _GARMENT] = np.clip(garment * shade, 0, 1)
    palette[:, _PAT1] = _PATTERN_RGB[pattern_cols[:, 1]]
    palette[:, _PAT2] = _PATTERN_RGB[pattern_cols[:, 2]]
    # details and outline: a darker shade of the garment (a lighter one for black)
    dark = palette[:, _GARMENT].mean(1, keepdims=True) < 0.2
    palette[:, _ACCENT] = np.where(dark, 0.35, palette[:, _GARMENT] * 0.62)
    # on a pattern, details in near-black (not in a pattern colour) still show
    palette[color == _MULTICOLOR, _ACCENT] = 0.12
    palette[:, _INNER] = np.where(rng.random((b, 1)) < 0.7, 0.97, 0.12)
    palette[:, _PANTS] = _PANTS_COLORS[rng.integers(0, len(_PANTS_COLORS), b)]
    palette[:, _FUR] = (0.82, 0.76, 0.66)
    palette[:, _LIGHT] = 0.96

    # Figure coordinates: u across (0 = body axis), v down from the top of the head.
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    canvas = _Canvas(
        (xs[None] - _col(cx)) / _col(scale),
        (ys[None] - _col(top)) / _col(scale),
        category,
    )
    _draw_figure(canvas, male, shoulder, sleeve_kind, skirt)
    _draw_pattern(canvas, color == _MULTICOLOR, pattern_kind, pattern_period)
    mat, seg = canvas.mat, canvas.seg

    # A darker outline keeps light garments visible on the light background.
    cloth = np.isin(mat, _GARMENT_MATERIALS)
    inside = cloth.copy()
    for axis in (1, 2):
        for step in (-1, 1):
            inside &= np.roll(cloth, step, axis=axis)
    mat[cloth & ~inside] = _ACCENT

    images = palette[np.arange(b)[:, None, None], mat]
    # soft side shading on the figure, so it is not flat paint
    shading = 1.0 - 0.10 * np.clip(np.abs(canvas.u) / 30, 0, 1) ** 2
    images *= np.where(seg > 0, shading, np.float32(1))[..., None]
    return np.clip(images, 0, 1, out=images), seg


class _Canvas:
    """Material and label maps of a batch, painted in layers, optionally on a subset of rows."""

    def __init__(self, u: np.ndarray, v: np.ndarray, category: np.ndarray) -> None:
        self.u, self.v, self.au = u, v, np.abs(u)
        self.category = category
        self.mat = np.zeros(u.shape, np.int8)
        self.seg = np.zeros(u.shape, np.uint8)

    def rows(self, *names: str) -> np.ndarray:
        """Indices of the images whose category is one of `names`."""
        codes = [code for code, name in CATEGORY.items() if name in names]
        return np.flatnonzero(np.isin(self.category, codes))

    def paint(self, mask, material, label, rows: np.ndarray | None = None) -> None:
        """Paint `material` and `label` where `mask` holds (on `rows` only, when given)."""
        if rows is None:
            np.copyto(self.mat, material, where=mask, casting="unsafe")
            np.copyto(self.seg, label, where=mask, casting="unsafe")
            return
        mat, seg = self.mat[rows], self.seg[rows]
        np.copyto(mat, material, where=mask, casting="unsafe")
        np.copyto(seg, label, where=mask, casting="unsafe")
        self.mat[rows], self.seg[rows] = mat, seg


def _draw_figure(
    c: _Canvas, male: np.ndarray, shoulder: np.ndarray, sleeve_kind: np.ndarray, skirt: np.ndarray
) -> None:
    u, v, au, category = c.u, c.v, c.au, c.category
    m3 = male[:, None, None]
    sw = _col(shoulder)
    hem = _col(_HEM[category])
    below = _BELOW[category][:, None, None]

    # Legs and what covers them.
    gap = (au < 1.2) & (v >= 96)
    c.paint((v >= 72) & (au <= 13) & ~gap, _SKIN, LEGS)
    pants = (v >= 70) & (au <= 14.5) & ~gap
    skirt_mask = (v >= 70) & (v <= 100) & (au <= 14.5 + (v - 70) * 0.35)
    shorts = (v >= 70) & (v <= 92) & (au <= 15) & ~((au < 1.2) & (v >= 84))
    own = (below == _BELOW_PANTS) & ~skirt[:, None, None]
    c.paint(pants & own, _PANTS, LOWER)
    c.paint(skirt_mask & (below == _BELOW_PANTS) & skirt[:, None, None], _PANTS, LOWER)
    c.paint(pants & (below == _BELOW_GARMENT_PANTS), _GARMENT, LOWER)
    c.paint(shorts & (below == _BELOW_GARMENT_SHORTS), _GARMENT, LOWER)

    # Long hair behind the shoulders (ladies), then a hood behind the head.
    c.paint(~m3 & _ellipse(u, v, 0, 30, 14.5, 24) & (v >= 8), _HAIR, HAIR)
    r = c.rows("hoodie", "parka")
    c.paint(_ellipse(u[r], v[r], 0, 21, 15, 16), _GARMENT, UPPER, r)

    # Torso: shoulders to hem, flaring and (ladies) pinched at the waist.
    t = np.clip((v - 34) / (hem - 34), 0, 1)
    half = sw + _col(_FLARE[category]) * t**1.5
    half -= np.where(m3, 0, _col(_PINCH[category])) * np.exp(-(((v - 60) / 9) ** 2))
    torso = (v >= 34) & (v <= hem) & (au <= half) & (v >= 34 + np.maximum(0, au - sw + 7) * 0.7)
    c.paint(torso, _GARMENT, UPPER)

    # Necklines show skin (labelled with the face: neck and chest).
    neck = _NECK[category][:, None, None]
    neck_skin = (
        ((neck == _NECK_CREW) & _ellipse(u, v, 0, 33, 6, 5))
        | ((neck == _NECK_V) & (v < 50) & (au < (v - 30) * 0.42))
        | ((neck == _NECK_SCOOP) & _ellipse(u, v, 0, 33, sw - 8, 10))
        | ((neck == _NECK_BOAT) & _ellipse(u, v, 0, 33, 13, 4.5))
    )
    c.paint(torso & neck_skin, _SKIN, FACE)
    r = c.rows("tank")  # a deep scoop between narrow straps: bare shoulders
    straps = (v[r] < 48) & (au[r] > sw[r] - 9)
    c.paint(torso[r] & (straps | _ellipse(u[r], v[r], 0, 34, sw[r] - 9, 15)), _SKIN, ARMS, r)

    # Category details on the torso: (names, material, mask of the rows' coordinates).
    def lapels(u, v, au, hem):
        return (v < 62) & (au <= (62 - v) * 0.33)

    details = (
        (("blazer", "coat"), _INNER, lapels),
        # cardigan: a V opening over the shirt, buttoned below it
        # (openings stay above the chest, where `garment_color` reads the garment's colour)
        (("cardigan",), _INNER, lambda u, v, au, hem: (v < 47) & (au <= (v - 33) * 0.45)),
        (("cardigan",), _ACCENT, lambda u, v, au, hem: ((au < 1.4) & (v >= 50) & (v % 7 < 2.0))
                                                     | ((v >= 80) & (v <= 88) & (au >= 5)
                                                        & (au <= 12))),
        (("kimono",), _INNER, lambda u, v, au, hem: au <= 1 + (v - 34) * 0.06),
        (("blazer", "coat"), _ACCENT,
         lambda u, v, au, hem: (v < 62) & (np.abs(au - (62 - v) * 0.33) < 1.2)),
        (("coat",), _ACCENT,
         lambda u, v, au, hem: _ellipse(au, v, 5, 70, 1.6, 1.6) | _ellipse(au, v, 5, 82, 1.6, 1.6)),
        (("blazer",), _ACCENT, lambda u, v, au, hem: _ellipse(u, v, 0, 68, 1.6, 1.6)),
        (("parka", "bomber"), _ACCENT, lambda u, v, au, hem: au < 0.9),
        # jacket: worn open over a shirt, a stand collar and two pocket flaps
        (("jacket",), _INNER, lambda u, v, au, hem: (v >= 40) & (au < 1.6)),
        (("jacket",), _ACCENT, lambda u, v, au, hem: ((v < 39) & (au < 10))
                                                   | ((v >= 66) & (v <= 73) & (au >= 5)
                                                      & (au <= 12))),
        (("bomber",), _ACCENT, lambda u, v, au, hem: v >= hem - 7),
        # sweater: a thick ribbed band at the hem (and a roll collar, drawn with the neck)
        (("sweater",), _ACCENT, lambda u, v, au, hem: v >= hem - 8),
        # blouse: a light pointed collar either side of the V neck
        (("blouse",), _LIGHT, lambda u, v, au, hem: (v < 46) & (au >= (v - 30) * 0.42)
                                                   & (au <= (v - 30) * 0.42 + 9 - (v - 34) * 0.5)),
        (("kimono",), _ACCENT, lambda u, v, au, hem: (v >= 62) & (v <= 68)),
        (("hoodie",), _ACCENT, lambda u, v, au, hem: ((v >= 62) & (v <= 74)
                                                     & (au <= 11 - (74 - v) * 0.25))
                                                    | ((v < 48) & (np.abs(au - 3) < 0.7))),
        (("henley",), _LIGHT, lambda u, v, au, hem: (v < 56) & (au < 2.0)),  # a light placket
        (("jersey",), _INNER, lambda u, v, au, hem: (v >= 46) & (v <= 53)),
    )  # fmt: skip
    for names, material, shape in details:
        r = c.rows(*names)
        c.paint(torso[r] & shape(u[r], v[r], au[r], hem[r]), material, UPPER, r)

    # Arms hang from the shoulders; sleeves cover them down to the sleeve's end.
    arm_skin = np.zeros(u.shape, bool)
    sleeve_mask = np.zeros(u.shape, bool)
    sleeve_end = _col(np.select([sleeve_kind == 1, sleeve_kind == 2], [86.0, 52.0], 0.0))
    arm_w = np.where(m3, 6.5, 5.5)
    wide = np.zeros_like(sw)
    wide[c.rows("kimono")] = 0.28
    below_shoulder = np.clip(v - 38, 0, None)
    for side in (-1.0, 1.0):
        along = np.abs(u - side * (sw - 3 + below_shoulder * 0.13))
        arm = ((v >= 38) & (v <= 88) & (along <= arm_w)) | _ellipse(
            u, v, side * (sw - 3), 40, arm_w + 0.5, 6
        )
        arm_skin |= arm | _ellipse(u, v, side * (sw - 3 + 53 * 0.13), 91, 4.5, 5)
        cover = (along <= arm_w + 1.5 + wide * below_shoulder) & (v >= 38)
        sleeve_mask |= (arm | cover) & (v <= sleeve_end)
    c.paint(arm_skin, _SKIN, ARMS)
    c.paint(sleeve_mask, _GARMENT, UPPER)
    r = c.rows("bomber", "sweater")  # ribbed cuffs
    c.paint(sleeve_mask[r] & (v[r] >= sleeve_end[r] - 6), _ACCENT, UPPER, r)
    r = c.rows("top")  # off the shoulders: bare shoulders above the top and its sleeves
    bare = (v[r] >= 33) & (v[r] < 45) & (torso[r] | sleeve_mask[r] | arm_skin[r])
    c.paint(bare, _SKIN, ARMS, r)
    ruffle = (v[r] >= 45) & (v[r] < 50) & (torso[r] | sleeve_mask[r])
    c.paint(ruffle, _ACCENT, UPPER, r)

    # A poncho covers the arms: a wide cape from the neck.
    r = c.rows("poncho")
    cape = (v[r] >= 30) & (v[r] <= hem[r]) & (au[r] <= 7 + (v[r] - 30) * 0.72)
    c.paint(cape, _GARMENT, UPPER, r)
    c.paint(cape & (np.abs(v[r] - hem[r] + 4) < 1.2), _ACCENT, UPPER, r)

    # Head and neck, short hair (men) or a fringe and locks over the shoulders (ladies).
    neck_w = np.where(m3, 5.2, 4.2)
    head = _ellipse(u, v, 0, 18, 9.5, 11.5)
    c.paint((au <= neck_w) & (v >= 24) & (v <= 35) & ~torso | head, _SKIN, FACE)
    c.paint(_ellipse(u, v, 0, 16, 11, 11) & (v <= np.where(m3, 12, 13)), _HAIR, HAIR)
    hooded = np.isin(category, [c_ for c_, n in CATEGORY.items() if n in ("hoodie", "parka")])
    r = np.flatnonzero(~male & ~hooded)
    locks = (au[r] >= 8) & (au[r] <= 13.5) & (v[r] >= 12) & (v[r] <= 50 - 0.3 * (au[r] - 8) ** 2)
    c.paint(locks, _HAIR, HAIR, r)
    r = np.flatnonzero(_NECK[category] == _NECK_TURTLE)  # a roll collar up the neck
    collar = (au[r] <= neck_w[r] + 3.5) & (v[r] >= 24) & (v[r] <= 36)
    c.paint(collar, _ACCENT, UPPER, r)
    r = c.rows("parka")
    fur = _ellipse(u[r], v[r], 0, 19, 13.5, 15) & ~_ellipse(u[r], v[r], 0, 19, 10, 12)
    c.paint(fur & (v[r] < 34), _FUR, UPPER, r)


def _draw_pattern(c: _Canvas, multi: np.ndarray, kind: np.ndarray, period: np.ndarray) -> None:
    """Multicolor garments: a pattern of three colours, stripes or checks."""
    r = np.flatnonzero(multi)
    u, v, p = c.u[r], c.v[r], _col(period[r])
    kind = kind[r][:, None, None]
    stripes_h = np.floor(v / p) % 3
    stripes_v = np.floor(u / p) % 3
    checks = np.floor(u / p) % 2 + np.floor(v / p) % 2
    which = np.select([kind == 0, kind == 1], [stripes_h, stripes_v], checks)
    material = np.array([_GARMENT, _PAT1, _PAT2], np.int8)[which.astype(np.int64)]
    c.mat[r] = np.where(c.mat[r] == _GARMENT, material, c.mat[r])
