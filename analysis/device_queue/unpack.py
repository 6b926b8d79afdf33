"""Write DEST/cifar-10-batches-py from a pack (``pack.py``): the long-tailed training images as they are,
the other training images zeros, the test batches exactly as ``materialize.py`` writes them.

    python unpack.py DEST        # run from the pack's folder or with its path
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import materialize  # noqa: E402  (the shared script, packed beside this file: its test images are here)


def unpack(dest: Path) -> Path:
    out = dest / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(json.loads((HERE / "labels.json").read_text())["labels"], dtype=np.int64)
    indices = np.load(HERE / "train_lt_index.npy")
    rows = np.zeros((50000, 3072), dtype=np.uint8)
    tall = np.asarray(Image.open(HERE / "train_lt.png").convert("RGB"))
    rows[indices] = tall.reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2).reshape(-1, 3072)
    for i in range(5):
        part = slice(10000 * i, 10000 * (i + 1))
        batch = {"batch_label": f"training batch {i + 1} of 5", "data": rows[part], "labels": labels[part].tolist()}
        materialize.dump(out / f"data_batch_{i + 1}", batch)
    lossless = np.asarray(Image.open(HERE / "sprite_50.png").convert("RGB")).transpose(0, 2, 1).reshape(-1, 3072)
    materialize.dump(
        out / "test_batch_lossless_1000",
        {"batch_label": "first 1000 of testing batch 1 of 1", "data": lossless, "labels": labels[50000:].tolist()},
    )
    images, test_labels = materialize.jpeg_test()
    test = {"batch_label": "testing batch 1 of 1 (decoded from JPEG)", "data": images, "labels": test_labels}
    materialize.dump(out / "test_batch", test)
    meta = {"label_names": materialize.CLASSES, "num_cases_per_batch": 10000, "num_vis": 3072}
    materialize.dump(out / "batches.meta", meta)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"{unpack(Path(sys.argv[1]))}: written, {len(np.load(HERE / 'train_lt_index.npy'))} training images")
