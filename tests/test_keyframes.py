"""keyframes.mode: iframes reads only the packets the container marks as keyframes; it must still give
exactly the frames the decoder calls keyframes, on every codec, and cope with containers that mark none."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import pytest

from utils.config import KeyframeConfig, load_config
from utils.keyframes import KeyframeExtractor


def iframes_config() -> KeyframeConfig:
    # no near-duplicate dropping: every keyframe the decoder gives must come out
    return dataclasses.replace(load_config().keyframes, mode="iframes", dedup_distance=-1)


def decoder_keyframes(path: Path) -> list[int]:
    """pts of the frames a full decode flags as keyframes: the ground truth."""
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(c.streams.video[0]) if f.key_frame]


@pytest.mark.parametrize("name", [
    "sintel_trailer_480p_h264.mp4",  # H.264 with B-frames: keyframes come out of a reordering decoder
    "mediabunny_transparency_720p60_vp9.webm",  # VP9, whose decoder ignores skip_frame=NONKEY
    "bbb_5s_1080p_hevc.ts",  # HEVC in MPEG-TS (non-zero start time)
    "mediaelement_echo_270p_vp8.webm",  # VP8, a keyframe every few frames
])
def test_iframes_mode_gives_exactly_the_decoders_keyframes(videos, name):
    path = videos / name
    with KeyframeExtractor(path, iframes_config()) as ex:
        got = [k.pts for k in ex]
        assert ex.frames_decoded == len(got)  # nothing but keyframes was decoded
    assert got == decoder_keyframes(path)
    assert got


def test_iframes_mode_reads_a_container_that_marks_no_keyframes(videos, tmp_path):
    src = videos / "sintel_trailer_480p_h264.mp4"
    nut = tmp_path / "unmarked.nut"
    with av.open(str(src)) as i, av.open(str(nut), "w", format="nut") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is None:
                continue
            packet.is_keyframe = False
            packet.stream = out
            o.mux(packet)
    with av.open(str(nut)) as c:
        assert not any(p.is_keyframe for p in c.demux(c.streams.video[0])), "precondition: no packet marked"
    with KeyframeExtractor(nut, iframes_config()) as ex:
        from_nut = [(k.frame_index, k.image.shape) for k in ex]
    with KeyframeExtractor(src, iframes_config()) as ex:
        from_mp4 = [(k.frame_index, k.image.shape) for k in ex]
    assert from_nut == from_mp4 and len(from_mp4) == 15
