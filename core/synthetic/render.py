"""Drawing a synthetic scene (``core.synthetic.scene``): the fitness-pose images.

A scene is a room (floor with a pattern, walls, lighting), 1..N people from
``core.synthetic.body`` each doing one exercise, a few props (ball, box, plant, kettlebell),
and a camera. ``render_scene`` draws it with PIL and returns, per person, the projected
keypoints with a visibility worked out against *what was drawn*:

* Background: ray-cast per pixel (vectorised numpy) against the floor plane and the four
  walls of a box-shaped room, so floor patterns (tiles, checker, wood planks, plain),
  yoga mats, windows and posters follow the camera's perspective; distance haze.
* Bodies and props: every body part (torso, pelvis, head, upper arm, forearm, hand,
  thigh, shin, foot) and every prop is one *primitive*: a few capsules / circles /
  polygons with one colour scheme, shaded as a lit cylinder (a dark rim, a mid tone
  and a highlight shifted towards the light). Primitives are drawn far to near
  (painter's algorithm on their mean camera depth); soft floor shadows come first.
* The same primitives are drawn once more, flat, into an integer *id image* (primitive
  id per pixel). A keypoint is **visible (2)** when the pixel under it belongs to one of
  the body parts that meet at that joint (say, upper arm or forearm for an elbow),
  **occluded (1)** when something else was drawn there (another part of the same body,
  another person, a prop), and **outside (0)** when it projects outside the image or
  behind the camera. The id image also gives each person's visible silhouette mask.

Figures (people, props) are drawn on a transparent layer at ``supersample`` times the
size and box-filtered down over the background (antialiasing); the background and the
id image are made at the final size. Determinism: all randomness comes from the
``numpy.random.Generator`` passed in; PIL drawing is deterministic. Dumbbells held by
people doing curls or presses belong to that person's silhouette but to no joint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.keypoints import BODY_JOINTS
from core.synthetic import body as B
from core.synthetic.camera import Camera, project
from core.synthetic.scene import Person, Prop, Scene

# --------------------------------------------------------------------------- background

def _hash2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cheap deterministic pseudo-random value in [0, 1) per integer cell (a, b)."""
    h = (a.astype(np.int32) * np.int32(73856093)) ^ (b.astype(np.int32) * np.int32(19349663))
    return (h & 0xFFFF).astype(np.float32) / 65536.0


def render_background(scene: Scene, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float32 RGB of the empty room seen from ``scene.camera`` at this size.

    Per pixel: the camera ray hits the floor (y = 0) or one of the room's four walls,
    whichever is nearer; patterns are functions of the hit point, so they follow the
    perspective. Work is done on (H, W) scalar fields (tone, brightness) and turned
    into colour once, in float32: this is the renderer's hottest function."""
    # One per-pixel ray cast: floor, mats, walls and panels share the ray arrays, split they would
    # be recomputed.
    cam = scene.camera
    f = cam.focal * width / cam.width
    u = ((np.arange(width, dtype=np.float32) + 0.5 - width / 2) / f)[None, :]
    v = ((np.arange(height, dtype=np.float32) + 0.5 - height / 2) / f)[:, None]
    rot = cam.rotation.astype(np.float32)
    # world ray = R^T (u, v, 1): three (H, W) components
    dx, dy, dz = (u * rot[0, i] + v * rot[1, i] + rot[2, i] for i in range(3))
    # Python floats, not numpy float64 scalars: those would upcast every float32 array
    # they touch (NumPy 2 promotion rules) and double the cost.
    o = [float(v) for v in cam.position]
    c, r = [float(v) for v in scene.room_centre], float(scene.room_half)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dy < -1e-6, -o[1] / dy, np.float32(np.inf))
        tx = np.abs(np.where(dx > 0, np.float32(c[0] + r - o[0]), np.float32(c[0] - r - o[0])) / dx)
        tz = np.abs(np.where(dz > 0, np.float32(c[2] + r - o[2]), np.float32(c[2] - r - o[2])) / dz)
    t_wall = np.minimum(tx, tz)
    floor = t_floor < t_wall
    t = np.where(floor, t_floor, t_wall)
    x, y, z = o[0] + dx * t, o[1] + dy * t, o[2] + dz * t

    # Floor: tone in [0, 1] between the two floor colours, and a brightness factor.
    s = float(scene.floor_scale)
    xs, zs = x / s, z / s
    if scene.floor_style == "wood":
        plank = np.floor(zs)
        joint = np.floor(xs / 8 + _hash2(plank, plank) * 3)
        tone = _hash2(plank, joint).astype(np.float32)
        bright = 1 + 0.06 * np.sin(x * 40 + tone * 30 + np.sin(x * 7) * 2)
        bright = np.where(np.abs(zs - np.round(zs)) < 0.04, 0.6 * bright, bright)
    elif scene.floor_style in ("tiles", "checker"):
        ix, iz = np.floor(xs), np.floor(zs)
        tone = ((ix + iz) % 2) if scene.floor_style == "checker" else 0.35 * _hash2(ix, iz)
        grout = (np.abs(xs - np.round(xs)) < 0.03) | (np.abs(zs - np.round(zs)) < 0.03)
        bright = np.where(grout, np.float32(0.85), np.float32(1.0))
    else:
        tone = np.zeros_like(x)
        bright = 1 + 0.05 * np.sin(x * 3.1 + z * 2.3)
    # Light falls off a little away from the room's centre.
    bright = bright * (0.95 - 0.04 * np.hypot(x - c[0], z - c[2]) / r)
    c0, c1 = scene.floor_colours.astype(np.float32)
    col = c0 + (c1 - c0) * tone.astype(np.float32)[..., None]
    for centre, yaw, mcol in scene.mats:
        ddx, ddz = x - float(centre[0]), z - float(centre[1])
        along = ddx * math.cos(yaw) + ddz * math.sin(yaw)
        across = -ddx * math.sin(yaw) + ddz * math.cos(yaw)
        on = (np.abs(along) < 1.0) & (np.abs(across) < 0.32)
        col[on] = mcol

    # Walls: plain colour, a darker skirting board and rail, side walls a bit darker.
    f32 = np.float32
    wall_b = np.where(y < 0.12, f32(0.55), np.where((y > 1.0) & (y < 1.06), f32(0.8), f32(1.0)))
    wall_b = wall_b * np.where(tx < tz, f32(0.85), f32(1.0))
    bright = np.where(floor, bright, wall_b)
    img = np.where(floor[..., None], col, scene.wall_colour.astype(np.float32)) * bright[..., None]
    img[(~floor) & (y > 2.9)] = (235, 235, 230)  # ceiling
    if scene.wall_panels:
        # Windows, posters, mirrors: rectangles on the walls, in wall coordinates.
        on_x = tx < tz                                    # hit a wall of constant x
        wall_id = np.where(on_x, np.where(dx > 0, 1, 0), np.where(dz > 0, 3, 2))
        along = np.where(on_x, z - c[2], x - c[0])
        for wall, centre, width, y0, y1, colour in scene.wall_panels:
            on = (~floor) & (wall_id == wall) & (np.abs(along - centre) < width / 2) & (y > y0) & (y < y1)
            img[on] = colour
    # Haze: far things fade towards a light grey.
    haze = np.clip(t / 25.0, 0, 0.35)[..., None]
    return img * (1 - haze) + 200 * haze


# --------------------------------------------------------------------------- primitives

# (part name, shapes) for a body: capsules are (joint a, joint b, radius a, radius b) in
# metres for an average build; "poly" lists joints; radii scale with height and girth.
_PART_SHAPES: dict[str, list[tuple]] = {
    "pelvis": [("cap", "left_hip", "right_hip", 0.085, 0.085), ("cap", "pelvis", "spine", 0.105, 0.10)],
    "torso": [("poly", ("left_shoulder", "right_shoulder", "right_hip", "left_hip")),
              ("cap", "spine", "neck", 0.10, 0.10), ("cap", "left_shoulder", "right_shoulder", 0.055, 0.055),
              ("cap", "left_shoulder", "left_hip", 0.06, 0.075), ("cap", "right_shoulder", "right_hip", 0.06, 0.075)],
    "neck": [("cap", "neck", "head", 0.045, 0.045)],
    "head": [("head",)],
    **{f"{s}_{part}": shapes for s in ("left", "right") for part, shapes in {
        "upper_arm": [("cap", f"{s}_shoulder", f"{s}_elbow", 0.047, 0.04)],
        "forearm": [("cap", f"{s}_elbow", f"{s}_wrist", 0.038, 0.03)],
        "hand": [("cap", f"{s}_wrist", f"{s}_index", 0.03, 0.022), ("cap", f"{s}_wrist", f"{s}_pinky", 0.028, 0.02),
                 ("cap", f"{s}_wrist", f"{s}_thumb", 0.018, 0.014)],
        "thigh": [("cap", f"{s}_hip", f"{s}_knee", 0.075, 0.05)],
        "shin": [("cap", f"{s}_knee", f"{s}_ankle", 0.048, 0.035)],
        "foot": [("cap", f"{s}_ankle", f"{s}_heel", 0.035, 0.03), ("cap", f"{s}_heel", f"{s}_foot_index", 0.032, 0.028)],
    }.items()},
}

# Body parts that meet at each annotated joint: a keypoint is visible when one of these
# parts of the same person was drawn on top at its pixel.
JOINT_PARTS: dict[str, tuple[str, ...]] = {
    "nose": ("head",), "left_eye": ("head",), "right_eye": ("head",),
    "left_ear": ("head",), "right_ear": ("head",),
    **{f"{s}_{j}": tuple(f"{s}_{p}" if p not in ("torso", "pelvis") else p for p in parts)
       for s in ("left", "right") for j, parts in {
           "shoulder": ("torso", "upper_arm"), "elbow": ("upper_arm", "forearm"),
           "wrist": ("forearm", "hand"), "pinky": ("hand",), "index": ("hand",), "thumb": ("hand",),
           "hip": ("pelvis", "torso", "thigh"), "knee": ("thigh", "shin"),
           "ankle": ("shin", "foot"), "heel": ("foot",), "foot_index": ("foot",)}.items()},
}
assert set(JOINT_PARTS) == set(BODY_JOINTS)
PART_NAMES: tuple[str, ...] = tuple(_PART_SHAPES)
# Painter's order uses a part's mean axis depth. A limb beside the trunk (an arm
# hanging at the side, a thigh at the hip) has the same axis depth as the trunk, yet is
# seen in front of its silhouette's edge: sort the trunk a little further back, less
# than a limb that really is behind it (the far arm in a side view, ~0.3 m). The neck ends
# at the head's centre: seen from behind it would be drawn over the back of the head,
# where it reads as a face, so it sorts behind the head (and still in front of the trunk).
_DEPTH_BIAS = {"torso": 0.08, "pelvis": 0.08, "neck": 0.05}


# What the drawing looks like, for caches of renders (the demo's data): 2 = a face and a
# lower front neckline on the side facing the camera, the neck behind the head.
RENDER_VERSION = 2


@dataclass
class _Primitive:
    depth: float                       # mean camera depth, metres (painter's order)
    shapes: list[tuple]                # ("cap", p0, p1, r0, r1, rgb) | ("circle", c, r, rgb) | ("poly", pts, rgb)
    shade: float                       # diffuse light factor of the part
    owner: int                         # person index, -1 for props
    part: str                          # part name or prop kind


def _part_colour(p: Person, part: str) -> np.ndarray:
    if part in ("torso", "left_upper_arm", "right_upper_arm"):
        return p.shirt
    if part.endswith("forearm"):
        return p.shirt if p.long_sleeves else p.skin
    if part in ("pelvis",) or part.endswith("thigh"):
        return p.pants
    if part.endswith("shin"):
        return p.skin if p.shorts else p.pants
    if part.endswith("foot"):
        return p.shoes
    return p.skin  # head, neck, hands


def _person_primitives(p: Person, pi: int, cam: Camera, light: np.ndarray, scale: float) -> list[_Primitive]:
    uv, z = project(cam, p.joints)
    uv = uv * scale
    f = cam.focal * scale
    k = p.shape.height / 1.72
    idx = B.JOINT_INDEX
    prims = []
    for part, shapes in _PART_SHAPES.items():
        colour = _part_colour(p, part)
        out, depths, dirs = [], [], []
        for s in shapes:
            if s[0] == "cap":
                _, a, b, ra, rb = s
                ia, ib = idx[a], idx[b]
                if z[ia] <= 0.05 or z[ib] <= 0.05:
                    continue
                g = k * (p.shape.girth if part not in ("head", "neck") and "hand" not in part and "foot" not in part else 1.0)
                out.append(("cap", uv[ia], uv[ib], f * ra * g / z[ia], f * rb * g / z[ib], colour))
                depths += [z[ia], z[ib]]
                dirs.append(p.joints[ib] - p.joints[ia])
            elif s[0] == "poly":
                ii = [idx[j] for j in s[1]]
                if (z[ii] <= 0.05).any():
                    continue
                out.append(("poly", uv[ii], colour))
            else:  # head: hair behind the face, face turned towards the nose
                ih, ino = idx["head"], idx["nose"]
                if z[ih] <= 0.05:
                    continue
                r = f * 0.097 * k * p.shape.head / z[ih]
                fwd = uv[ino] - uv[ih]
                up = uv[idx["head"]] - uv[idx["neck"]]
                hair = ("circle", uv[ih] - 0.25 * fwd + 0.12 * up, r * 1.03, p.hair)
                face = ("circle", uv[ih] + 0.2 * fwd, r * 0.93, p.skin)
                out += [hair, face] if z[ino] < z[ih] else [face, hair]
                depths.append(z[ih])
                dirs.append(np.zeros(3))
                features = _face_features(p, uv, z, r)
                if features:   # drawn over the shaded head, under anything in front of it
                    prims.append(_Primitive(float(z[ih]) - 1e-3, features, 1.0, pi, "head"))
        if not out:
            continue
        if not depths:
            depths = [z[idx[j]] for j in shapes[0][1]]
        # Lambert on a cylinder: its lit side faces the light when the light is
        # perpendicular to the limb; take the mean over the visible half.
        d = np.mean([v / (np.linalg.norm(v) + 1e-9) for v in dirs], axis=0) if dirs else np.zeros(3)
        perp = light - d * float(light @ d)
        shade = 0.55 + 0.45 * float(np.linalg.norm(perp)) * (0.6 + 0.4 * max(0.0, light[1]))
        prims.append(_Primitive(float(np.mean(depths)) + _DEPTH_BIAS.get(part, 0.0), out, shade, pi, part))
    neckline = _neckline(p, cam, scale)
    if neckline:   # on the shirt's front, under anything in front of the trunk
        prims.append(_Primitive(_torso_depth(z) + _DEPTH_BIAS["torso"] - 1e-3, neckline, 1.0, pi, "torso"))
    if p.dumbbells:
        prims += _dumbbell_primitives(p, pi, cam, scale)
    return prims


def _torso_depth(z: np.ndarray) -> float:
    """The torso polygon's mean depth, as the torso primitive sorts by it."""
    idx = B.JOINT_INDEX
    return float(np.mean([z[idx[j]] for j in ("left_shoulder", "right_shoulder", "right_hip", "left_hip")]))


def _neckline(p: Person, cam: Camera, scale: float) -> list[tuple]:
    """A shirt's neckline, cut lower at the front: a patch of skin below the neck, seen
    only when the chest faces the camera (the second front/back cue after the face)."""
    idx = B.JOINT_INDEX
    ls, rs, neck, pelvis = (p.joints[idx[n]] for n in ("left_shoulder", "right_shoulder", "neck", "pelvis"))
    forward = np.cross(ls - rs, neck - pelvis)          # the body faces +z, its left is +x
    forward /= np.linalg.norm(forward) + 1e-9
    top = 0.5 * (ls + rs)
    if forward @ (cam.position - top) <= 0:
        return []
    down = (pelvis - neck) / (np.linalg.norm(pelvis - neck) + 1e-9)
    centre = top + 0.035 * down + 0.06 * forward
    uv, z = project(cam, centre[None])
    radius = cam.focal * scale * 0.04 * p.shape.height / 1.72 / max(z[0], 0.05)
    return [] if z[0] <= 0.05 else [("dot", uv[0] * scale, radius, p.skin * 0.95)]


# Face features, seen only from the front: without them the back of a head looks like its
# front, and a person seen from behind reads as mirrored (left and right swapped), which
# an estimator cannot tell either.
_EYE_COLOUR = np.array([35.0, 28.0, 28.0])
_MOUTH_DARKEN = np.array([0.62, 0.42, 0.42])


def _face_features(p: Person, uv: np.ndarray, z: np.ndarray, r: float) -> list[tuple]:
    """Dark eyes (each when it faces the camera), brows in the hair colour and a mouth
    below the nose, as unshaded dots of a few pixels."""
    idx = B.JOINT_INDEX
    ih, ino = idx["head"], idx["nose"]
    if z[ino] >= z[ih] or r < 1.5:          # the face is turned away, or the head is a speck
        return []
    out = []
    eyes = [idx["left_eye"], idx["right_eye"]]
    mid = 0.5 * (uv[eyes[0]] + uv[eyes[1]])
    down = uv[ino] - mid                        # eyes -> nose, in the image
    for ie in eyes:
        if z[ie] < z[ih]:
            out.append(("dot", uv[ie], max(0.6, 0.11 * r), _EYE_COLOUR))
            out.append(("dot", uv[ie] - 0.9 * down, max(0.5, 0.1 * r), p.hair * 0.8))
    out.append(("dot", uv[ino] + 1.1 * down, max(0.6, 0.14 * r), p.skin * _MOUTH_DARKEN))
    return out


def _dumbbell_primitives(p: Person, pi: int, cam: Camera, scale: float) -> list[_Primitive]:
    """A dumbbell in each fist: the bar across the palm (index -> pinky direction),
    a weight plate at each end. Part of the person's silhouette, not a keypoint's part,
    so a wrist behind a plate counts as occluded."""
    f = cam.focal * scale
    j = {n: p.joints[B.JOINT_INDEX[n]] for n in B.ALL_JOINTS}
    prims = []
    for s in ("left", "right"):
        grip = 0.35 * j[f"{s}_wrist"] + 0.65 * 0.5 * (j[f"{s}_index"] + j[f"{s}_pinky"])
        axis = j[f"{s}_index"] - j[f"{s}_pinky"]
        axis = axis / (np.linalg.norm(axis) + 1e-9)
        pts = grip + np.outer([-0.15, -0.08, 0.08, 0.15], axis)
        uv, z = project(cam, pts)
        if (z <= 0.05).any():
            continue
        uv = uv * scale
        c = p.dumbbell_colour
        shapes = [("cap", uv[0], uv[3], f * 0.016 / z[0], f * 0.016 / z[3], np.array([150, 150, 155.0])),
                  ("cap", uv[0], uv[1], f * 0.05 / z[0], f * 0.05 / z[1], c),
                  ("cap", uv[2], uv[3], f * 0.05 / z[2], f * 0.05 / z[3], c)]
        prims.append(_Primitive(float(z.mean()), shapes, 0.8, pi, f"{s}_dumbbell"))
    return prims


def _prop_primitives(pr: Prop, cam: Camera, light: np.ndarray, scale: float) -> list[_Primitive]:
    # One branch per prop kind, each a handful of shapes.
    f = cam.focal * scale
    col = pr.colour
    if pr.kind == "ball":
        c = pr.position + np.r_[0, pr.size, 0]
        uv, z = project(cam, c[None])
        if z[0] <= 0.1:
            return []
        return [_Primitive(float(z[0]), [("circle", uv[0] * scale, f * pr.size / z[0], col)], 0.9, -1, "ball")]
    if pr.kind == "kettlebell":
        s = pr.size
        c = pr.position + np.r_[0, s, 0]
        pts = np.stack([c, c + np.r_[0, 1.6 * s, 0]])
        uv, z = project(cam, pts)
        if (z <= 0.1).any():
            return []
        dark = np.array([45, 45, 50.0])
        shapes = [("ring", uv[1] * scale, f * 0.7 * s / z[1], max(1.0, f * 0.18 * s / z[1]), dark),
                  ("circle", uv[0] * scale, f * s / z[0], dark)]
        return [_Primitive(float(z.mean()), shapes, 0.8, -1, "kettlebell")]
    if pr.kind == "plant":
        h = pr.size
        pot = np.stack([pr.position, pr.position + np.r_[0, 0.35 * h, 0]])
        uv, z = project(cam, pot)
        if (z <= 0.1).any():
            return []
        shapes = [("cap", uv[0] * scale, uv[1] * scale, f * 0.14 * h / z[0], f * 0.18 * h / z[1], col)]
        rng = np.random.default_rng(int(pr.size * 1e6) % 2**31)
        green = np.array([50, 120, 45.0]) * rng.uniform(0.7, 1.3)
        leaves = pr.position + np.r_[0, 0.35 * h, 0] + rng.normal(0, 1, (7, 3)) * np.r_[0.16, 0.2, 0.16] * h
        leaves[:, 1] = np.abs(leaves[:, 1] - pr.position[1]) + 0.45 * h
        luv, lz = project(cam, leaves)
        for q, zz in zip(luv, lz):
            if zz > 0.1:
                shapes.append(("circle", q * scale, f * 0.13 * h / zz, green))
        return [_Primitive(float(z.mean()), shapes, 0.85, -1, "plant")]
    # box: the faces turned towards the camera, each shaded by its own normal
    s = pr.size
    cy, sy = math.cos(pr.yaw), math.sin(pr.yaw)
    # half extents along the box's own axes: s wide and deep, 0.8 s tall, on the floor
    ax = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) * np.r_[s / 2, s * 0.4, s / 2][:, None]
    centre = pr.position + np.r_[0, 0.4 * s, 0]
    corners = np.array([centre + i * ax[0] + j * ax[1] + k * ax[2]
                        for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)])
    uv, z = project(cam, corners)
    if (z <= 0.1).any():
        return []
    shapes = []
    for axis in range(3):
        for sign in (-1, 1):
            normal = sign * ax[axis] / np.linalg.norm(ax[axis])
            face_c = centre + sign * ax[axis]
            if normal @ (cam.position - face_c) <= 0:
                continue
            ids = [i for i, c in enumerate(corners) if ((c - centre) @ ax[axis]) * sign > 0]
            # order the 4 corners around the face
            q = uv[ids]
            ang = np.arctan2(*(q - q.mean(0)).T[::-1])
            shade = 0.55 + 0.45 * max(0.0, float(normal @ light))
            shapes.append(("flat", q[np.argsort(ang)] * scale, col * shade))
    return [_Primitive(float(z.mean()), shapes, 1.0, -1, "box")]


# --------------------------------------------------------------------------- drawing

def _rgb(c) -> tuple[int, int, int, int]:
    """Opaque RGBA fill (the figure layer is RGBA; the alpha is coverage)."""
    return (min(255, max(0, int(c[0]))), min(255, max(0, int(c[1]))), min(255, max(0, int(c[2]))), 255)


def _cap_polygon(p0, p1, r0, r1) -> list[tuple[float, float]] | None:
    d = np.asarray(p1) - np.asarray(p0)
    n = math.hypot(d[0], d[1])
    if n < 1e-6:
        return None
    nx, ny = -d[1] / n, d[0] / n
    return [(p0[0] + nx * r0, p0[1] + ny * r0), (p1[0] + nx * r1, p1[1] + ny * r1),
            (p1[0] - nx * r1, p1[1] - ny * r1), (p0[0] - nx * r0, p0[1] - ny * r0)]


def _draw_shape(draw: ImageDraw.ImageDraw, s: tuple, fill, shrink: float = 1.0,
                offset=(0.0, 0.0)) -> None:
    kind = s[0]
    if kind == "cap":
        _, p0, p1, r0, r1, _c = s
        r0, r1 = max(r0 * shrink, 0.5), max(r1 * shrink, 0.5)
        p0 = (p0[0] + offset[0] * r0, p0[1] + offset[1] * r0)
        p1 = (p1[0] + offset[0] * r1, p1[1] + offset[1] * r1)
        poly = _cap_polygon(p0, p1, r0, r1)
        if poly:
            draw.polygon(poly, fill=fill)
        draw.ellipse((p0[0] - r0, p0[1] - r0, p0[0] + r0, p0[1] + r0), fill=fill)
        draw.ellipse((p1[0] - r1, p1[1] - r1, p1[0] + r1, p1[1] + r1), fill=fill)
    elif kind == "circle":
        _, c, r, _c = s
        r = max(r * shrink, 0.5)
        c = (c[0] + offset[0] * r, c[1] + offset[1] * r)
        draw.ellipse((c[0] - r, c[1] - r, c[0] + r, c[1] + r), fill=fill)
    elif kind == "ring":
        _, c, r, w, _c = s
        if shrink == 1.0:
            draw.ellipse((c[0] - r, c[1] - r, c[0] + r, c[1] + r), outline=fill, width=int(max(1, w)))
    elif kind in ("poly", "flat"):
        # A polygon fills the space between its part's capsules: rim and mid tone only
        # (in the highlight layer it would flatten the whole part into one bright tone).
        if shrink == 1.0 or (kind == "poly" and shrink >= 0.7):
            draw.polygon([tuple(q) for q in s[1]], fill=fill)


# Shading layers of a lit cylinder: (radius fraction, offset towards the light, tone).
_LAYERS = ((1.0, 0.0, 0.62), (0.78, 0.16, 0.9), (0.38, 0.42, 1.12))


def _draw_primitive(draw: ImageDraw.ImageDraw, prim: _Primitive, light2d, ambient: float) -> None:
    k = ambient + (1 - ambient) * prim.shade
    for shrink, off, tone in _LAYERS:
        for s in prim.shapes:
            colour = s[-1]
            if s[0] == "flat":
                if shrink == 1.0:
                    draw.polygon([tuple(q) for q in s[1]], fill=_rgb(colour))
                continue
            if s[0] == "dot":                  # unshaded, drawn once
                if shrink == 1.0:
                    (cx, cy), rr = s[1], s[2]
                    draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=_rgb(colour))
                continue
            _draw_shape(draw, s, _rgb(colour * k * tone + (12 if tone > 1 else 0)), shrink,
                        (light2d[0] * off, light2d[1] * off))


@dataclass
class PersonRender:
    keypoints: np.ndarray      # (len(BODY_JOINTS), 3): u, v in pixels, visibility 0/1/2
    depth: np.ndarray          # (len(BODY_JOINTS),) camera depth, metres
    mask: np.ndarray           # (H, W) bool, the pixels where this person was drawn on top
    bbox: tuple[float, float, float, float]  # xywh of the whole body (occluded parts too), clipped to the image


@dataclass
class RenderResult:
    image: Image.Image         # RGB, size x size
    ids: np.ndarray            # (H, W) int32: 0 background, else primitive index + 1
    people: list[PersonRender]


def render_scene(scene: Scene, *, supersample: int = 2, rng: np.random.Generator | None = None) -> RenderResult:
    """Draw ``scene``; see the module docstring for the visibility rule."""
    cam = scene.camera
    W, H, ss = cam.width, cam.height, supersample
    # The background has no sharp edges worth supersampling: ray-cast it (and its
    # shadows) at the final size, then upsample for drawing the figures on top.
    bg = render_background(scene, W, H)
    prims: list[_Primitive] = []
    for pi, p in enumerate(scene.people):
        prims += _person_primitives(p, pi, cam, scene.light, ss)
    for pr in scene.props:
        prims += _prop_primitives(pr, cam, scene.light, ss)
    prims.sort(key=lambda q: -q.depth)  # far first

    dark = _shadow_mask(scene)
    bg = np.clip(bg * (1 - 0.45 * dark[..., None]), 0, 255).astype(np.uint8)

    # Figures go on a transparent layer at ``ss`` times the size; its box-filtered
    # downsample (premultiplied alpha in PIL) gives antialiased edges over the background.
    layer = Image.new("RGBA", (W * ss, H * ss), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    light_cam = cam.rotation @ scene.light
    l2 = light_cam[:2] / (np.linalg.norm(light_cam[:2]) + 1e-9)
    light2d = (float(l2[0]), float(l2[1]))
    for prim in prims:
        _draw_primitive(draw, prim, light2d, scene.ambient)
    if ss > 1:
        layer = layer.resize((W, H), Image.Resampling.BOX)
    canvas = Image.alpha_composite(Image.fromarray(bg, "RGB").convert("RGBA"), layer).convert("RGB")

    # The id image at the final size: the same primitives, same order, flat.
    ids_img = Image.new("I", (W, H), 0)
    idraw = ImageDraw.Draw(ids_img)
    inv = 1.0 / ss
    for n, prim in enumerate(prims, start=1):
        for s in prim.shapes:
            _draw_shape(idraw, _scale_shape(s, inv), n)
    ids = np.asarray(ids_img, dtype=np.int32)

    if scene.noise > 0 and rng is not None:
        noise = rng.standard_normal((H, W, 3), dtype=np.float32) * np.float32(scene.noise)
        arr = np.asarray(canvas, dtype=np.float32) + noise + np.float32(0.5)
        canvas = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    owner = np.array([-2] + [q.owner for q in prims])      # id -> person (-1 prop, -2 background)
    part = np.array([""] + [q.part for q in prims], dtype=object)
    people = []
    for pi, p in enumerate(scene.people):
        people.append(_annotate_person(p, pi, cam, ids, owner, part, prims, ss))
    return RenderResult(canvas, ids, people)


def _shadow_mask(scene: Scene) -> np.ndarray:
    """(H, W) float32 in [0, 1]: soft floor shadows of the bodies and props, made by
    squashing every capsule onto y = 0 along the light direction."""
    cam = scene.camera
    shadow = Image.new("L", (cam.width, cam.height), 0)
    sd = ImageDraw.Draw(shadow)
    lt = scene.light / max(scene.light[1], 0.2)
    f = cam.focal
    for p in scene.people:
        flat = p.joints - lt[None] * p.joints[:, 1:2]
        uv, z = project(cam, flat)
        if (z <= 0.1).any():
            continue
        for shapes in _PART_SHAPES.values():
            for s in shapes:
                if s[0] == "cap":
                    ia, ib = B.JOINT_INDEX[s[1]], B.JOINT_INDEX[s[2]]
                    _draw_shape(sd, ("cap", uv[ia], uv[ib], f * s[3] / z[ia], f * s[4] / z[ib], None), 255)
    for pr in scene.props:
        c = pr.position
        uv, z = project(cam, np.stack([c, c - lt * pr.size]))
        if (z > 0.1).all():
            r = f * pr.size * 0.7
            _draw_shape(sd, ("cap", uv[0], uv[1], r / z[0], r / z[1], None), 255)
    shadow = shadow.filter(ImageFilter.BoxBlur(1.5))
    return np.asarray(shadow, dtype=np.float32) / 255.0


def _scale_shape(s: tuple, k: float) -> tuple:
    kind = s[0]
    if kind == "cap":
        return ("cap", s[1] * k, s[2] * k, s[3] * k, s[4] * k, s[5])
    if kind == "circle":
        return ("circle", s[1] * k, s[2] * k, s[3])
    if kind == "ring":
        return ("ring", s[1] * k, s[2] * k, max(1.0, s[3] * k), s[4])
    return (kind, s[1] * k, s[2])


def _annotate_person(p: Person, pi: int, cam: Camera, ids: np.ndarray, owner: np.ndarray,
                     part: np.ndarray, prims: list[_Primitive], supersample: int) -> PersonRender:
    H, W = ids.shape
    uv, z = project(cam, p.joints[B.BODY_FROM_ALL])
    inside = (z > 0.05) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    vis = np.zeros(len(BODY_JOINTS), dtype=np.int64)
    for j, name in enumerate(BODY_JOINTS):
        if not inside[j]:
            continue
        top = ids[int(uv[j, 1]), int(uv[j, 0])]
        vis[j] = 2 if owner[top] == pi and part[top] in JOINT_PARTS[name] else 1
    mask = owner[ids] == pi
    # Whole-body box from the drawn primitives' extents (capsule ends +- radius).
    pts = []
    for q in prims:
        if q.owner != pi:
            continue
        for s in q.shapes:
            if s[0] == "cap":
                pts += [s[1] - s[3], s[1] + s[3], s[2] - s[4], s[2] + s[4]]
            elif s[0] == "circle":
                pts += [s[1] - s[2], s[1] + s[2]]
    if pts:
        pts_a = np.array(pts) / supersample
        x0, y0 = np.clip(pts_a.min(0), 0, [W, H])
        x1, y1 = np.clip(pts_a.max(0), 0, [W, H])
    else:
        x0 = y0 = x1 = y1 = 0.0
    kp = np.concatenate([uv, vis[:, None]], axis=1)
    return PersonRender(kp, z, mask, (float(x0), float(y0), float(x1 - x0), float(y1 - y0)))

