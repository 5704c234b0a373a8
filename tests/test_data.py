"""Image folders: loading, conversions, and clear errors for bad input."""

import numpy as np
import pytest
from PIL import Image

from d3hr import D3HRError
from d3hr.data import EMBEDDED, check_class_name, export_embedded_class, iter_image_batches, list_images, load_image


def test_load_converts_modes_and_sizes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.dstack([rgb, np.full((40, 60), 255, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    Image.fromarray(rgb[:8, :8]).save(tmp_path / "small.png")
    for name in ("a.png", "gray.png", "cmyk.jpg", "rgba.png", "deep.png", "small.png"):
        x = load_image(tmp_path / name, 32, 3)
        assert x.shape == (32, 32, 3) and x.dtype == np.uint8, name
    # 16-bit is scaled to 8 bit, not clipped: the centre crop of a 16-bit copy matches the 8-bit gray image
    assert np.abs(load_image(tmp_path / "deep.png", 32, 1).astype(int) - load_image(tmp_path / "gray.png", 32, 1)).max() <= 1
    # an opaque RGBA image equals its RGB version
    assert np.array_equal(load_image(tmp_path / "rgba.png", 32, 3), load_image(tmp_path / "a.png", 32, 3))
    # centre crop of the short side: a 40x60 image keeps its middle 40 columns
    assert np.array_equal(load_image(tmp_path / "a.png", 40, 3), rgb[:, 10:50])


def test_corrupt_image_names_the_file(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    for name in ("bad.png", "truncated.png"):
        with pytest.raises(D3HRError, match=name):
            load_image(tmp_path / name, 8)
    with pytest.raises(D3HRError, match="bad.png"):
        list(iter_image_batches(sorted(tmp_path.iterdir()), 8, 3, 2))


def test_empty_and_missing_class_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(D3HRError, match="empty class folder"):
        list_images(tmp_path / "empty")
    with pytest.raises(D3HRError, match="class folder not found"):
        list_images(tmp_path / "absent")


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x"])
def test_class_names_that_leave_the_folder_are_rejected(name):
    with pytest.raises(D3HRError):
        check_class_name(name)


@pytest.mark.parametrize("name", ["n01440764", "great white shark", "café", "v1.2"])
def test_unusual_but_valid_class_names(name):
    assert check_class_name(name) == name


def test_export_embedded_class(tmp_path):
    counts = export_embedded_class("animal_mnist", "Zebra", tmp_path, 100, 0, 32)
    assert counts == {"train": 900, "val": 100}
    train = sorted((tmp_path / "train" / "Zebra").iterdir())
    val = sorted((tmp_path / "val" / "Zebra").iterdir())
    assert not {p.name for p in train} & {p.name for p in val}
    img = np.asarray(Image.open(train[0]))
    assert img.shape == (32, 32) and img[:2].max() == 0  # padded 28 -> 32 with black borders
    again = tmp_path / "again"
    export_embedded_class("animal_mnist", "Zebra", again, 100, 0, 32)
    assert [p.name for p in sorted((again / "val" / "Zebra").iterdir())] == [p.name for p in val]  # seeded split
    with pytest.raises(D3HRError, match="not in embedded dataset"):
        export_embedded_class("animal_mnist", "Unicorn", tmp_path, 100, 0, 32)
    assert EMBEDDED["animal_mnist"][-1] == "Zebra"


@pytest.mark.parametrize("threads", [2, 3])
def test_batches_decoded_on_threads_are_the_same_batches(tmp_path, threads):
    """iter_image_batches on several threads (encode on a GPU: JPEG decoding a batch ahead) yields exactly the batches
    of one thread, in file order, with the same skipped files and the same error for a bad file."""
    rng = np.random.default_rng(0)
    for i in range(11):
        Image.fromarray(rng.integers(0, 255, (40 + i, 30, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.jpg", quality=90)
    (tmp_path / "05.jpg").write_bytes(b"not a jpeg")
    files = sorted(tmp_path.iterdir())
    runs = []
    for n in (1, threads):
        skipped = []
        runs.append((list(iter_image_batches(files, 16, 3, 4, "skip", skipped, threads=n)), skipped))
    (one, skip1), (many, skip_n) = runs
    assert [ids for ids, _ in one] == [ids for ids, _ in many] and len(one) == 3 and skip1 == skip_n == [str(files[5])]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(one, many))
    with pytest.raises(D3HRError, match="05.jpg: cannot read image"):
        list(iter_image_batches(files, 16, 3, 4, threads=threads))


def test_image_subset_is_seeded_in_file_order_and_all_without_a_cap():
    from d3hr.data import image_subset

    files = [f"img_{i:03d}.png" for i in range(50)]
    a, b = image_subset(files, 10, 0, "cat"), image_subset(files, 10, 0, "cat")
    assert a == b and len(a) == 10 and a == sorted(a) and set(a) <= set(files)
    assert image_subset(files, 10, 0, "dog") != a and image_subset(files, 10, 1, "cat") != a  # per class and seed
    assert image_subset(files, 0, 0, "cat") == files == image_subset(files, 50, 0, "cat")
