"""Keyframe colouring through the protocol and a real server on 127.0.0.1 (issue 23): the keyframe input
pair, the unsure output, the server's keyframe cache, and bad keyframes refused while the server keeps
serving. The matching itself is tested in test_keyframes.py."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from backend import protocol as P
from backend.inference import keyframe_requests
from backend.inference.keyframes import keyframe, keyframe_outputs, paint
from backend.inference.pipeline import Colorizer
from backend.service.server import Server, ServerConfig
from helpers import free_port, reference, run_in_threads
from training.eval_keyframes import sequence

SEED, SIZE = 10_000_001, 192  # a held-out character, small frames


@pytest.fixture(scope="module")
def frames():
    rendered, palette = sequence(SEED, 3, SIZE)
    return [r.line for r in rendered], [palette[r.mask] for r in rendered]


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    srv = Server(Colorizer(tiny_checkpoint, device="cpu"), ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}"))
    thread = srv.start_thread()
    yield srv.endpoint
    srv.stop()
    thread.join(30)


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def rgb(pixels: P.Pixels) -> np.ndarray:
    return pixels.to_array()[..., :3]


def test_a_frame_identical_to_the_keyframe_comes_back_in_its_colours_and_the_cache_is_hit(server, frames):
    lines, colourings = frames
    key = keyframe(lines[0], colourings[0])
    with P.Client(server, timeout=120) as client:
        info = client.info()["keyframes"]
        assert info == {"supported": True, "roles": list(P.KEYFRAME_ROLES), "outputs": [P.UNSURE_OUTPUT],
                        "cache_size": keyframe_requests.KEYFRAME_CACHE_SIZE}
        out = client.colorize(lines[0], keyframe=(lines[0], colourings[0]))  # reference: the colouring
        assert set(out) == {"flats", P.UNSURE_OUTPUT}
        assert np.array_equal(rgb(out["flats"]), paint(key.regions.labels, key.colours))
        assert not rgb(out[P.UNSURE_OUTPUT]).any()
        first = client.last_header["keyframe"]
        assert first == {"cached": False, "regions": key.regions.count}
        # the next frame against the same keyframe (sent again, its line art as a PNG) reuses its segmentation
        client.colorize(lines[1], reference(), ("flats",), keyframe=(png(lines[0]), colourings[0]))
        assert client.last_header["keyframe"]["cached"] is True
        assert client.last_timings["keyframe_ms"] >= 0 and client.last_timings["match_ms"] > 0
        client.colorize(png(lines[1]), keyframe=(png(lines[1]), png(colourings[1])))  # another keyframe
        assert client.last_header["keyframe"]["cached"] is False
        client.colorize(lines[2], keyframe=(png(lines[0]), png(colourings[0])))  # both still kept
        assert client.last_header["keyframe"]["cached"] is True
        client.colorize(lines[2], reference())  # no keyframe: no keyframe facts in the reply
        assert "keyframe" not in client.last_header


def test_the_server_gives_what_the_pipeline_gives(server, frames, tiny_checkpoint):
    lines, colourings = frames
    outputs = ("color", "flats", P.UNSURE_OUTPUT)
    with P.Client(server, timeout=120) as client:
        got = client.colorize(lines[2], colourings[0], outputs, keyframe=(lines[0], colourings[0]))
    local = Colorizer(tiny_checkpoint, device="cpu").colorize(lines[2], colourings[0], ("color", "flats"))
    want = {**local, **keyframe_outputs(keyframe(lines[0], colourings[0]), lines[2], local["flats"])}
    for name in outputs:
        assert np.array_equal(rgb(got[name]), want[name]), name
    assert not np.array_equal(want["flats"], local["flats"])  # the keyframe did colour the flats


def test_frames_batched_together_share_one_keyframe_segmentation(frames, tiny_checkpoint):
    """Three frames in flight at once: the model thread's first batch pauses (delay_ms), so the other two
    queue up and run as one batch; every frame is coloured as in-process, the keyframe segmented once."""
    lines, colourings = frames
    colorizer = Colorizer(tiny_checkpoint, device="cpu")
    srv = Server(colorizer, ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", delay_ms=500))
    thread = srv.start_thread()
    got: dict[int, tuple] = {}

    def send(i: int) -> None:
        with P.Client(srv.endpoint, timeout=120) as client:
            out = client.colorize(lines[i], colourings[0], keyframe=(lines[0], colourings[0]))
            got[i] = (out, client.last_header)

    try:
        run_in_threads(send, [(0,), (1,), (2,)], timeout=120)
    finally:
        srv.stop()
        thread.join(30)
    assert max(h["batch_size"] for _, h in got.values()) >= 2
    assert sorted(h["keyframe"]["cached"] for _, h in got.values()) == [False, True, True]
    key = keyframe(lines[0], colourings[0])
    for i, (out, _) in got.items():
        flats = colorizer.colorize(lines[i], colourings[0], ("flats",))["flats"]
        want = keyframe_outputs(key, lines[i], flats)
        assert all(np.array_equal(rgb(out[k]), want[k]) for k in ("flats", P.UNSURE_OUTPUT)), i


def test_bad_keyframes_are_refused_clearly_and_the_server_keeps_serving(server, frames):
    lines, colourings = frames
    blank = np.full((64, 64), 255, np.uint8)
    scribble = blank.copy()
    cv2.line(scribble, (20, 30), (40, 30), 0, 2)  # ink that encloses nothing
    line, colour = lines[0], colourings[0]
    cases = {  # what: (colorize keyword arguments, the error's code, words its message must hold)
        "sizes differ (raw)": (dict(keyframe=(line, colour[:100])), "bad_request", "same size"),
        "sizes differ (PNG)": (dict(keyframe=(png(line), png(colour[:, :50]))), "bad_request", "same size"),
        "no lines": (dict(keyframe=(blank, np.zeros((64, 64, 3), np.uint8))), "bad_request", "no lines"),
        "no closed regions": (dict(keyframe=(scribble, np.zeros((64, 64, 3), np.uint8))), "bad_request",
                              "no closed regions"),
        "an empty frame": (dict(lineart=np.full((SIZE, SIZE), 255, np.uint8)), "bad_request", "no lines"),
        "unsure without a keyframe": (dict(keyframe=None, reference=colour, outputs=("flats", P.UNSURE_OUTPUT)),
                                      "bad_request", "send a keyframe"),
        "a keyframe for no flats": (dict(outputs=("color",)), "bad_request", "ask for the outputs flats"),
        "over the limits": (dict(keyframe=(np.zeros((20000, 2), np.uint8),) * 2, reference=colour), "too_large",
                            "keyframe_lineart"),
    }
    with P.Client(server, timeout=120) as client:
        for what, (kwargs, code, words) in cases.items():
            call = {"lineart": line, "keyframe": (line, colour), **kwargs}
            with pytest.raises(P.IrodoriError) as err:
                client.colorize(**call)
            assert (err.value.code, words in err.value.message) == (code, True), (what, err.value.message)
            out = client.colorize(line, keyframe=(line, colour))  # the next request works
            assert not rgb(out[P.UNSURE_OUTPUT]).any()
        size = {"width": SIZE, "height": SIZE, "layout": "L"}
        for role in P.KEYFRAME_ROLES:  # one of the pair missing
            inputs = [({"role": r, "format": "raw", **size}, line.tobytes()) for r in ("lineart", "reference", role)]
            with pytest.raises(P.IrodoriError) as err:
                client.request("colorize", {"outputs": ["flats"]}, inputs)
            assert err.value.code == "bad_request" and "send both" in err.value.message, err.value.message
        with pytest.raises(ValueError, match="pair"):
            client.colorize(line, keyframe=(line,))
        assert client.colorize(line, reference())["color"].width == SIZE


def test_the_keyframe_cache_is_bounded_and_counts(frames, monkeypatch):
    lines, colourings = frames
    made = []
    real = keyframe_requests.keyframes.keyframe
    monkeypatch.setattr(keyframe_requests.keyframes, "keyframe", lambda *a: made.append(1) or real(*a))
    cache = keyframe_requests.KeyframeCache(size=2)
    pairs = [(lines[i], colourings[i]) for i in range(3)]
    for i in (0, 0, 1, 0, 2, 1, 0):  # 1 evicts nothing, 2 evicts 1 (0 was used last), 1 then evicts 0
        cache.get(*pairs[i])
    assert (cache.hits, cache.misses, len(made)) == (2, 5, 5)
    key, cached = cache.get(*pairs[1])
    want = keyframe(*pairs[1])
    assert cached and np.array_equal(key.colours, want.colours)
    assert np.array_equal(key.regions.labels, want.regions.labels)
    changed = colourings[1].copy()
    changed[0, 0] ^= 1  # one bit of the colouring: another keyframe
    assert cache.get(lines[1], changed)[1] is False
    assert keyframe_requests.model_outputs(("color", P.UNSURE_OUTPUT)) == ("color", "flats")
    assert keyframe_requests.model_outputs(("flats", "shading")) == ("flats", "shading")


def test_cli_keyframe_through_a_server_writes_what_it_writes_in_process(tmp_path, server, frames, tiny_checkpoint):
    from backend.inference.imageio import load_image, save_image
    from backend.tools.cli import main as cli

    lines, colourings = frames
    for i in (1, 2):
        save_image(tmp_path / "frames" / f"f{i}.png", lines[i])
    save_image(tmp_path / "key_line.png", lines[0])
    save_image(tmp_path / "key_colour.png", colourings[0])
    base = ["colorize", str(tmp_path / "frames"), "--keyframe", str(tmp_path / "key_line.png"),
            str(tmp_path / "key_colour.png"), "--checkpoint", str(tiny_checkpoint)]
    assert cli([*base, "-o", str(tmp_path / "local")]) == 0
    assert cli([*base, "-o", str(tmp_path / "served"), "--server", server]) == 0
    for name in ("f1_flats.png", "f1_unsure.png", "f2_flats.png", "f2_unsure.png"):
        assert np.array_equal(load_image(tmp_path / "served" / name), load_image(tmp_path / "local" / name)), name
