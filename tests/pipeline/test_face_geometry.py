"""The face geometry of ``alignimate faces`` (:mod:`alignimate.pipeline.face_geometry`): templates, the
FFHQ quad, temporal smoothing of similarities; and the region of a photo a frame shows (render).

Pure numpy functions, checked against their documented definitions and against scikit-image's
similarities (an independent implementation); no detector and no photo involved.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from alignimate.pipeline.face_geometry import (
    face_template,
    ffhq_quad,
    similarity_parameters,
    smooth_similarities,
)
from alignimate.pipeline.face_timeline import face_template as reexported_face_template
from alignimate.pipeline.render import region_for_frame

# ArcFace 112 x 112 template (peers.md section 3: the 96 x 112 SphereFace points with x + 8).
ARCFACE = np.array(
    [
        (30.2946 + 8, 51.6963),
        (65.5318 + 8, 51.5014),
        (48.0252 + 8, 71.7366),
        (33.5493 + 8, 92.3655),
        (62.7299 + 8, 92.2041),
    ]
)


def _fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scikit-image, an independent implementation) as a 3x3 matrix."""
    return SimilarityTransform.from_estimate(src, dst).params


def _map(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def test_templates_follow_their_definitions() -> None:
    np.testing.assert_allclose(face_template("arcface", 112), ARCFACE, atol=1e-9)
    np.testing.assert_allclose(face_template("arcface", 224), (ARCFACE + 0.5) * 2 - 0.5, atol=1e-9)
    eyes = face_template("eyes", 500)
    np.testing.assert_allclose(eyes[:2], [[174.5, 199.5], [324.5, 199.5]], atol=1e-9)
    # Nose and mouth keep the ArcFace proportions: the same shape up to a similarity.
    np.testing.assert_allclose(_map(_fit(ARCFACE, eyes), ARCFACE), eyes, atol=1e-6)
    # FFHQ: for the average face, the quad side is 2 max(2 |eye_to_eye|, 1.8 |eye_to_mouth|), its centre
    # eye_avg + 0.1 eye_to_mouth, and the quad becomes the whole canvas.
    size = 1024
    ffhq = face_template("ffhq", size)
    eye_to_eye = ARCFACE[1] - ARCFACE[0]
    eye_avg = ARCFACE[:2].mean(axis=0)
    eye_to_mouth = ARCFACE[3:].mean(axis=0) - eye_avg
    qsize = 2 * max(2.0 * np.linalg.norm(eye_to_eye), 1.8 * np.linalg.norm(eye_to_mouth))
    k = size / qsize
    got_eye_avg = ffhq[:2].mean(axis=0)
    got_mouth = ffhq[3:].mean(axis=0)
    assert np.linalg.norm(ffhq[1] - ffhq[0]) == pytest.approx(k * np.linalg.norm(eye_to_eye))
    assert np.linalg.norm(got_mouth - got_eye_avg) == pytest.approx(k * np.linalg.norm(eye_to_mouth))
    centre = got_eye_avg + 0.1 * (got_mouth - got_eye_avg)
    np.testing.assert_allclose(centre, [(size - 1) / 2, (size - 1) / 2], atol=1e-6)
    quad = ffhq_quad(ARCFACE)
    assert np.linalg.norm(quad[3] - quad[0]) == pytest.approx(qsize)
    with pytest.raises(ValueError, match="template"):
        face_template("dlib", 512)


def _similarities(params: np.ndarray, sizes: list[tuple[int, int]]) -> np.ndarray:
    """Matrices with the given (log_scale, angle, tx, ty), built independently with scikit-image."""
    out = []
    for (log_scale, angle, tx, ty), (h, w) in zip(params, sizes, strict=True):
        # Our angle is counter-clockwise on screen: scikit-image's rotation with the opposite sign.
        linear = SimilarityTransform(scale=np.exp(log_scale), rotation=-angle).params
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        linear[:2, 2] = np.array([tx, ty]) - linear[:2, :2] @ centre
        out.append(linear)
    return np.stack(out)


def test_smoothing_reduces_frame_to_frame_jitter() -> None:
    rng = np.random.default_rng(3)
    n = 40
    sizes = [(480 + 40 * (i % 3), 640) for i in range(n)]
    t = np.linspace(0, 1, n)
    trend = np.column_stack([0.1 * t, 0.05 * np.sin(3 * t), 300 + 40 * t, 250 - 20 * t])
    noise = rng.normal(0, 1, (n, 4)) * np.array([0.02, 0.02, 4.0, 4.0])
    jittered = _similarities(trend + noise, sizes)
    np.testing.assert_allclose(similarity_parameters(jittered, sizes), trend + noise, atol=1e-9)
    smoothed = smooth_similarities(jittered, sizes, sigma=2.0)
    raw_steps = np.diff(trend + noise, axis=0).var(axis=0)
    smooth_steps = np.diff(similarity_parameters(smoothed, sizes), axis=0).var(axis=0)
    assert np.all(smooth_steps < raw_steps / 5), (raw_steps, smooth_steps)
    # It follows the trend: closer to it than the jittered input.
    error_raw = np.abs(noise).mean(axis=0)
    error_smooth = np.abs(similarity_parameters(smoothed, sizes) - trend).mean(axis=0)
    assert np.all(error_smooth < 0.6 * error_raw)
    # A steady series is left as it is, and sigma 0 changes nothing.
    steady = _similarities(np.tile(trend[:1], (n, 1)), sizes)
    np.testing.assert_allclose(smooth_similarities(steady, sizes, 3.0), steady, atol=1e-9)
    np.testing.assert_array_equal(smooth_similarities(jittered, sizes, 0.0), jittered)
    with pytest.raises(ValueError, match="sigma"):
        smooth_similarities(jittered, sizes, -1.0)


def test_faces_module_still_exports_the_geometry() -> None:
    assert reexported_face_template is face_template


def test_region_for_frame_is_the_part_of_the_photo_the_frame_shows() -> None:
    h, w = 300, 400
    image = np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3)
    # The frame shows the photo at half scale from (100, 50): 64 frame pixels cover photo x in
    # [99, 227] and y in [49, 177] (pixel edges), plus 2 px either side for the bilinear taps.
    frame_H_image = np.array([[0.5, 0.0, -50.0], [0.0, 0.5, -25.0], [0.0, 0.0, 1.0]])
    region, frame_H_region = region_for_frame(image, frame_H_image, (64, 64))
    x0, y0 = 97, 47
    assert region.shape == (180 - y0, 230 - x0, 3)
    assert np.shares_memory(region, image)  # a view: nothing copied before the warp
    np.testing.assert_array_equal(region, image[y0:180, x0:230])
    # frame_H_region maps a region pixel where frame_H_image maps the same photo pixel.
    points = np.array([[0.0, 0.0], [10.5, 3.0], [120.0, 90.0]])
    np.testing.assert_allclose(
        _map(frame_H_region, points), _map(frame_H_image, points + np.array([x0, y0])), atol=1e-12
    )
    # A frame larger than the photo gets the whole photo, and the matrix unchanged.
    small = image[:32, :48]
    region, frame_H_region = region_for_frame(small, np.eye(3), (64, 64))
    assert region.shape == small.shape
    np.testing.assert_array_equal(frame_H_region, np.eye(3))


def test_the_eyes_fit_holds_the_eyes_and_falls_back_when_they_are_implausible() -> None:
    from alignimate.pipeline.face_geometry import MAX_EYES_FIT_MISS, fit_to_template

    template = face_template("eyes", 512)
    rng = np.random.default_rng(3)
    # Faces whose proportions differ from the template's: mouth lower and wider, nose off-centre.
    faces = []
    for _ in range(5):
        face = template.copy()
        face[2] += rng.normal(0, 6, 2)
        face[3:] += np.array([[-12.0, 18.0], [12.0, 18.0]]) + rng.normal(0, 4, (2, 2))
        angle, scale, shift = rng.uniform(-0.3, 0.3), rng.uniform(0.5, 2.0), rng.uniform(-200, 200, 2)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
        faces.append(face @ rot.T + shift)
    landmarks = np.stack(faces)
    held, used = fit_to_template(landmarks, template, hold_eyes=True)
    five, not_used = fit_to_template(landmarks, template, hold_eyes=False)
    assert used.all() and not not_used.any()
    mapped = np.einsum("nij,nkj->nki", held[:, :2, :2], landmarks) + held[:, None, :2, 2]
    mapped_five = np.einsum("nij,nkj->nki", five[:, :2, :2], landmarks) + five[:, None, :2, 2]
    eye_miss = np.linalg.norm(mapped[:, :2] - template[:2], axis=2)
    eye_miss_five = np.linalg.norm(mapped_five[:, :2] - template[:2], axis=2)
    # The eyes all but land on the template's: three times closer than the five-point fit puts them.
    assert eye_miss.max() < 0.35 * eye_miss_five.min()
    # An eye landmark on the hairline: the eyes fit would throw the mouth far off, so it is not used.
    broken = landmarks.copy()
    broken[0, 0] += (broken[0, 1] - broken[0, 0]) @ np.array([[0.0, -1.0], [1.0, 0.0]]) * 1.2
    matrices, used = fit_to_template(broken, template, hold_eyes=True)
    reference, _ = fit_to_template(broken, template, hold_eyes=False)
    assert not used[0] and used[1:].all()
    assert np.allclose(matrices[0], reference[0])
    assert MAX_EYES_FIT_MISS == 0.5
