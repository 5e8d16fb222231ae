"""Krita documents (.kra) with animated layers, written by hand for the real-Krita tests.

Why build the file: Krita 5.1's Python API cannot create keyframes, and Document.importAnimation crashed
Krita in these tests, so animated layers come from a file, as a user's would.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

ICC = Path("/usr/share/color/icc/krita/sRGB-elle-V2-srgbtrc.icc")  # Krita's default profile (Debian package)


def paint_device(width: int, height: int, bgra: bytes) -> bytes:
    """A layer's pixels in Krita's .kra tile format (VERSION 2): 64x64 tiles, each flagged 0 = raw BGRA."""
    tiles = []
    for ty in range(0, height, 64):
        for tx in range(0, width, 64):
            tile = bytearray(64 * 64 * 4)
            for y in range(min(64, height - ty)):
                row = bgra[((ty + y) * width + tx) * 4:((ty + y) * width + min(tx + 64, width)) * 4]
                tile[y * 256:y * 256 + len(row)] = row
            tiles.append(f"{tx},{ty},LZF,{len(tile) + 1}\n".encode() + b"\x00" + bytes(tile))
    return f"VERSION 2\nTILEWIDTH 64\nTILEHEIGHT 64\nPIXELSIZE 4\nDATA {len(tiles)}\n".encode() + b"".join(tiles)


def animated_kra(width: int, height: int, layers: dict[str, dict[int, bytes]]) -> bytes:
    """A .kra holding animated paint layers {name: {time: BGRA bytes}}, the first one on top, each with a
    keyframe per entry."""
    end = max(max(frames) for frames in layers.values()) + 5
    entries, files = [], {}
    for i, (name, frames) in enumerate(layers.items(), start=1):
        times = sorted(frames)
        names = {t: f"layer{i}" if k == 0 else f"layer{i}.f{k}" for k, t in enumerate(times)}
        entries.append(f"""   <layer name="{name}" filename="layer{i}" nodetype="paintlayer"
          keyframes="layer{i}.keyframes.xml" colorspacename="RGBA" compositeop="normal" opacity="255"
          visible="1" locked="0" x="0" y="0" collapsed="0" intimeline="1" onionskin="0" colorlabel="0"
          channelflags="" channellockflags="" uuid="{{6b79a8de-5e1f-4c1d-abb6-ca3df08cb{i:03x}}}"/>
""")
        keys = "".join(f'  <keyframe frame="{names[t]}" time="{t}" color-label="0"><offset x="0" type="point" '
                       f'y="0"/></keyframe>\n' for t in times)
        files[f"anim/layers/layer{i}.keyframes.xml"] = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<keyframes xmlns="http://www.calligra.org/DTD/'
            f'krita-keyframes">\n <channel name="content">\n{keys} </channel>\n</keyframes>\n')
        if ICC.is_file():
            files[f"anim/layers/layer{i}.icc"] = ICC.read_bytes()
        for t in times:
            files[f"anim/layers/{names[t]}"] = paint_device(width, height, frames[t])
            files[f"anim/layers/{names[t]}.defaultpixel"] = bytes(4)
    maindoc = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE DOC PUBLIC '-//KDE//DTD krita 2.0//EN' 'http://www.calligra.org/DTD/krita-2.0.dtd'>
<DOC xmlns="http://www.calligra.org/DTD/krita" kritaVersion="5.1.5" editor="Krita" syntaxVersion="2.0">
 <IMAGE mime="application/x-kra" name="anim" width="{width}" height="{height}" colorspacename="RGBA"
        profile="sRGB-elle-V2-srgbtrc.icc" x-res="72" y-res="72" description="">
  <layers>
{"".join(entries)}  </layers>
  <animation>
   <framerate value="24" type="value"/>
   <range to="{end}" type="timerange" from="0"/>
   <currentTime value="0" type="value"/>
  </animation>
 </IMAGE>
</DOC>
"""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"application/x-krita")  # first and stored, as Krita writes it
        zf.writestr("maindoc.xml", maindoc)
        zf.writestr("documentinfo.xml", '<?xml version="1.0" encoding="UTF-8"?>\n<document-info xmlns='
                                        '"http://www.calligra.org/DTD/document-info"><about><title>anim</title>'
                                        "</about></document-info>\n")
        for path, data in files.items():
            zf.writestr(path, data)
    return buf.getvalue()
