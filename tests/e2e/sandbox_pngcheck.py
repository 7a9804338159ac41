"""sandbox_pngcheck.py - decodes a PNG on its own (zlib and struct only),
checking every chunk's CRC, and prints "WIDTH HEIGHT R,G,B SHARE" with the
most common colour and its share of the pixels. Independent of the Lua
encoder it checks. Usage: python3 sandbox_pngcheck.py FILE"""
import struct
import sys
import zlib
from collections import Counter


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def main(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "signature"
    pos, idat, palette = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, "crc of %r" % kind
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert interlace == 0
        elif kind == b"PLTE":
            palette = [tuple(body[i:i + 3]) for i in range(0, len(body), 3)]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
        if kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    bits = depth * channels
    stride = (width * bits + 7) // 8
    bpp = max(1, bits // 8)
    assert len(raw) == height * (stride + 1), "data length"
    prev, counts = bytearray(stride), Counter()
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + [0, a, b, (a + b) // 2, paeth(a, b, c)][ftype]) & 0xFF
        prev = line
        for x in range(width):
            if ctype == 3:
                bit = x * depth
                index = (line[bit // 8] >> (8 - depth - bit % 8)) & ((1 << depth) - 1)
                counts[palette[index]] += 1
            elif ctype in (2, 6) and depth == 8:
                counts[tuple(line[x * bpp:x * bpp + 3])] += 1
            else:
                raise SystemExit("unsupported colour type %d depth %d" % (ctype, depth))
    colour, n = counts.most_common(1)[0]
    print("%d %d %d,%d,%d %.3f" % (width, height, colour[0], colour[1], colour[2], n / (width * height)))


if __name__ == "__main__":
    main(sys.argv[1])
