"""The bundled anime model: it is the default where its VGG16 weights are set up (else the synthetic demo
model, with a warning that says what to run), it takes colour hints, and on held-out real faces it colours
better than painting the reference's average or ignoring the reference (a guard against shipping a
regressed model). Needs `irodori weights` and ../shared/data (skips outside CI, fails under CI=true)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from backend.inference import pipeline
from test_real import FACES, need_faces, need_weights


def test_default_is_the_anime_model_and_falls_back_with_a_warning(tmp_path, monkeypatch):
    need_weights()
    assert pipeline.default_checkpoint() == pipeline.ANIME_CHECKPOINT
    colorizer = pipeline.Colorizer(device="cpu")
    assert colorizer.takes_hints and colorizer.config.resolution == 128
    monkeypatch.setenv("IRODORI_CACHE", str(tmp_path))  # no weights here
    pipeline._warn_once.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pipeline.default_checkpoint() == pipeline.DEMO_CHECKPOINT
    assert any("irodori weights" in str(w.message) for w in caught)


def test_the_anime_model_beats_the_baselines_on_held_out_faces():
    need_faces()
    need_weights()
    from training.eval_models import colorizer_fn
    from training.eval_real import evaluate_images, pick_pictures

    colorizer = pipeline.Colorizer(pipeline.ANIME_CHECKPOINT, device="cpu")
    pictures = pick_pictures(FACES, 24, holdout=0.1)  # the split real.json never trained on
    result = evaluate_images(colorizer_fn(colorizer, 128, batch=8), pictures, 128)
    ratios = result["ratios"]
    print(f"\nanime model, 24 held-out faces: dE00 / fill {ratios['de00_vs_mean_fill']:.3f}, "
          f"/ grey {ratios['de00_vs_grey_reference']:.3f}, ranking {result['ranking_accuracy']:.3f}")
    assert ratios["de00_vs_mean_fill"] < 0.9
    assert ratios["de00_vs_grey_reference"] < 0.6
    assert result["ranking_accuracy"] > 0.45  # chance is 0.2 (README: the bundled figures)
    assert np.isfinite(result["rows"]["model"]["de00"])
