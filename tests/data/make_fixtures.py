#!/usr/bin/python3
"""Regenerate the small committed fixtures under tests/data/fixtures/.

Run from anywhere: /usr/bin/python3 tests/data/make_fixtures.py
Pixel and label values follow formulas the tests recompute:
  tiny images: N=6, 3x4, pixel(i, r, c) = i*16 + r*4 + c; labels i % 3.
"""
import gzip
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def idx(dtype, dims, payload):
    return bytes([0, 0, dtype, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def gz(data):
    # mtime=0 keeps the committed bytes reproducible.
    return gzip.compress(data, mtime=0)


def main():
    os.makedirs(OUT, exist_ok=True)
    n, rows, cols = 6, 3, 4
    pix = bytes((i * 16 + r * 4 + c) for i in range(n) for r in range(rows) for c in range(cols))
    lab = bytes(i % 3 for i in range(n))
    images = idx(8, [n, rows, cols], pix)
    labels = idx(8, [n], lab)
    write("tiny-images.idx", images)
    write("tiny-labels.idx", labels)
    write("tiny-images.idx.gz", gz(images))
    write("tiny-labels.idx.gz", gz(labels))
    # Malformed files, one per bug class.
    write("bad-magic.idx", b"\x01\x02" + images[2:])
    write("bad-dtype-f32.idx", idx(0x0D, [n, rows, cols], pix))   # valid IDX, unsupported
    write("bad-dtype-byte.idx", idx(0x07, [n, rows, cols], pix))  # not an IDX dtype
    write("bad-ndim.idx", idx(8, [n, rows * cols], pix))
    write("truncated.idx", images[:-5])
    write("truncated-header.idx", images[:9])
    write("truncated.idx.gz", gz(images)[:-12])
    write("trailing.idx", images + b"\x00\x01")
    write("labels-5.idx", idx(8, [5], lab[:5]))
    write("huge-dims.idx", idx(8, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], b""))
    write("huge-claim.idx", idx(8, [1000000, 1000, 1000], pix))    # fits size_t, not the file
    write("huge-claim-labels.idx", idx(8, [1000000], lab))
    corrupt = bytearray(gz(images))
    corrupt[len(corrupt) // 2] ^= 0xFF
    write("corrupt.idx.gz", bytes(corrupt))
    # CSV
    write("good.csv", b"a,b,label,c\n1,2,0,3\n4.5,-1e1,1,6\n7,8,2,9\n")
    write("semicolon.csv", b"1;2;3\r\n4;5;6\r\n")
    write("ragged.csv", b"a,b,label\n1,2,0\n3,4\n5,6,1\n")
    write("bad-cells.csv", b"a,b,label\n1,2,0\n3,abc,1\n5,,1\n7,8,2\n")
    write("bad-label.csv", b"a,label\n1,0\n2,x\n")
    write("empty.csv", b"")
    write("header-only.csv", b"a,b,label\n")
    # A metrics log as nn_metrics_log_write writes it (for plot_metrics.py).
    write("metrics.csv", b"epoch,train_loss,val_loss,val_acc,lr,seconds\n0,0.9,0.7,0.71,0.001,1.5\n"
          b"1,0.6,0.55,0.8,0.001,1.4\n2,0.45,0.5,0.83,0.0005,1.4\n3,0.4,nan,nan,0.0005,1.3\n")
    images_fixtures()


def images_fixtures():
    try:
        from PIL import Image
    except ImportError:
        print("PIL missing: image fixtures not regenerated")
        return
    root = os.path.join(OUT, "imgs")
    for cls in ("cat", "dog"):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
    # cat/a.png: 4x2 RGB, pixel (x, y) = (x*60, y*100, 7)
    a = Image.new("RGB", (4, 2))
    for x in range(4):
        for y in range(2):
            a.putpixel((x, y), (x * 60, y * 100, 7))
    a.save(os.path.join(root, "cat", "a.png"))
    # cat/b.jpg: flat gray 128 (JPEG is lossy; a flat image decodes exactly)
    Image.new("RGB", (8, 8), (128, 128, 128)).save(os.path.join(root, "cat", "b.jpg"), quality=95)
    # dog/c.png: 2x2 gray 0, 255 / 255, 0
    c = Image.new("L", (2, 2))
    c.putdata([0, 255, 255, 0])
    c.save(os.path.join(root, "dog", "c.png"))
    with open(os.path.join(root, "dog", "notes.txt"), "w") as f:
        f.write("not an image: skipped by extension\n")
    bad = os.path.join(OUT, "badimgs", "x")
    os.makedirs(bad, exist_ok=True)
    write(os.path.join("badimgs", "x", "broken.png"), b"\x89PNG\r\n\x1a\n" + b"garbage" * 4)
    write(os.path.join("badimgs", "x", "broken.jpg"), b"\xff\xd8\xff\xe0" + b"junk" * 4)


if __name__ == "__main__":
    main()
