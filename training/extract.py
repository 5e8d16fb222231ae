"""Line extractors: colour illustration -> line art, to make training pairs from coloured pictures (the
classical ones here; "hed", a learned edge detector, in training/hed.py).

All functions take float32 images in [0,1] ((H,W) grey or (H,W,3) RGB) and return (H,W) float32 line art in
[0,1] with 1 = paper and 0 = ink, the convention of backend.inference.pipeline.to_grey. `random_lines` draws an
extractor and its parameters per sample so the generator does not overfit one line style (paper-notes).
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
from scipy import ndimage

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # the same weights as the pipeline's to_grey


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) -> (H,W) grey, T(y) in the paper."""
    return (rgb @ LUMA).astype(np.float32) if rgb.ndim == 3 else rgb.astype(np.float32)


def _channels(image: np.ndarray, per_channel: bool) -> np.ndarray:
    """(H,W,C) float32: R, G and B, or the luminance alone as one channel."""
    return image.astype(np.float32) if (per_channel and image.ndim == 3) else luminance(image)[..., None]


def with_darks(extract: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """An extractor that also draws the edges between dark colours (`darks=True`, the default): the darker
    of its line art of the picture and of the picture's square root. The square root spreads the dark tones
    as far apart as the picture spreads the light ones, so black hair against a night-blue sky gets the
    silhouette a person would draw, while the light colours keep the lines of the picture itself (taken on
    the square root alone, the soft lines between pastel colours faded: docs/performance.md)."""

    @functools.wraps(extract)
    def extractor(image: np.ndarray, *args, darks: bool = True, **kwargs) -> np.ndarray:
        line = extract(image, *args, **kwargs)
        if darks:
            line = np.minimum(line, extract(np.sqrt(np.clip(image, 0.0, None)), *args, **kwargs))
        return line

    return extractor


@with_darks
def dilate_diff(image: np.ndarray, size: int = 3, gain: float = 2.5, per_channel: bool = True) -> np.ndarray:
    """Dilate (grey max filter) then subtract: edges light up where a darker region meets a lighter one.

    per_channel: take the largest difference over R, G and B, so edges between colours of equal lightness
    (red hair on green clothes) still give a line.
    """
    src = _channels(image, per_channel)
    diff = (ndimage.grey_dilation(src, size=(size, size, 1)) - src).max(axis=2)
    return (1.0 - np.clip(diff * gain, 0.0, 1.0)).astype(np.float32)


@with_darks
def xdog(image: np.ndarray, sigma: float = 0.5, k: float = 4.5, gamma: float = 0.97, eps: float = -0.01,
         phi: float = 60.0, per_channel: bool = True) -> np.ndarray:
    """eXtended Difference of Gaussians: D = G_sigma - gamma * G_(k sigma), soft-thresholded with tanh.

    Flat regions give D = (1 - gamma) * grey >= 0, so they stay paper; dark strokes and the dark side of an
    edge go negative and become ink. eps moves the threshold, phi sets how hard it is. per_channel: run it on
    R, G and B and keep the darkest ink, so an edge between colours of equal lightness (dark hair on a dark
    blue sky) is drawn as a person would draw it; on grey pictures it is the same as on their luminance.
    """
    src = _channels(image, per_channel)
    s = (sigma, sigma, 0)
    d = ndimage.gaussian_filter(src, s) - gamma * ndimage.gaussian_filter(src, tuple(x * k for x in s))
    line = np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps))).min(axis=2)
    return np.clip(line, 0.0, 1.0).astype(np.float32)


HIGHPASS_SCALE_PERCENTILE = 99.5  # high-pass: the strongest strokes set the scale, not its single darkest pixel
HIGHPASS_MIN_SCALE = 0.05  # ... at least this (grey levels in [0, 1]): a nearly blank picture's noise stays paper


@with_darks
def highpass(image: np.ndarray, sigma: float = 3.0, threshold: float = 0.12, gain: float = 3.0,
             per_channel: bool = True) -> np.ndarray:
    """Blur minus image (the classical cousin of sketchKeras): positive where a pixel is darker than its
    surroundings; normalised by the strength of its strongest strokes (the 99.5th percentile), thresholded
    at `threshold`, scaled by `gain`. Normalised by its maximum instead, a few black pixels (a pupil, a thin
    black line) set the scale and the softer edges of a picture, dark hair against the background among
    them, fall under the threshold: the line art then loses the silhouettes a person would draw.
    per_channel: the largest of R's, G's and B's high-pass, as in `xdog`, on the scale of the luminance's:
    it adds the edges between colours to the strokes, while scaled by its own strongest (colour) edges, a
    saturated background pushed a face's softer lines under the threshold."""
    grey = luminance(image)
    hp = ndimage.gaussian_filter(grey, sigma) - grey
    scale = max(float(np.percentile(hp, HIGHPASS_SCALE_PERCENTILE)), HIGHPASS_MIN_SCALE)
    if per_channel and image.ndim == 3:
        src = image.astype(np.float32)
        hp = (ndimage.gaussian_filter(src, (sigma, sigma, 0)) - src).max(axis=2)
    hp = hp / scale
    return (1.0 - np.clip((hp - threshold) * gain, 0.0, 1.0)).astype(np.float32)


def augment_lines(line: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vary the look of line art: thicker or thinner strokes, lighter or darker ink, a little blur."""
    out = line
    r = rng.random()
    if r < 0.2:  # thicker: a min filter spreads the ink
        out = ndimage.grey_erosion(out, size=(2, 2))
    elif r < 0.3:  # thinner: a max filter eats one pixel of ink, kept only where the ink was strong
        out = np.maximum(out, np.where(out < 0.3, ndimage.grey_dilation(out, size=(2, 2)) * 0.5, 0.0))
    if rng.random() < 0.5:  # contrast: gamma < 1 lightens weak ink, > 1 darkens it
        out = out ** rng.uniform(0.6, 1.8)
    if rng.random() < 0.2:  # hard binarisation, like a pen tool without antialiasing
        out = (out > rng.uniform(0.4, 0.8)).astype(np.float32)
    if rng.random() < 0.2:
        out = ndimage.gaussian_filter(out, rng.uniform(0.3, 0.7))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_lines(image: np.ndarray, rng: np.random.Generator, extractors: tuple[str, ...],
                 augment: bool = True) -> np.ndarray:
    """One of `extractors` with random parameters (ranges from paper-notes), then `augment_lines`."""
    name = extractors[int(rng.integers(len(extractors)))]
    if name == "dilate":
        line = dilate_diff(image, size=int(rng.choice([3, 3, 3, 5])), gain=rng.uniform(1.5, 4.0),
                           per_channel=bool(rng.random() < 0.7))
    elif name == "xdog":
        line = xdog(image, sigma=rng.uniform(0.3, 0.6), k=float(rng.choice([1.6, 4.5])), gamma=rng.uniform(0.95, 0.98),
                    eps=rng.uniform(-0.03, 0.0), phi=rng.uniform(20.0, 200.0), per_channel=bool(rng.random() < 0.7))
    elif name == "highpass":
        line = highpass(image, sigma=rng.uniform(1.5, 3.0), threshold=rng.uniform(0.1, 0.18), gain=rng.uniform(2.0, 5.0),
                        per_channel=bool(rng.random() < 0.7))
    elif name == "hed":  # learned edges (training.hed); it draws its own look, and needs the set-up weights
        from training.hed import hed_lines

        line = hed_lines(image if image.ndim == 3 else np.repeat(image[..., None], 3, 2), rng)
    else:
        raise ValueError(f"unknown line extractor {name!r}")
    return augment_lines(line, rng) if augment else line
