"""IDX reading, the bundled split, folders of IDX files, and downloads (from local files)."""

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_tui import data
from gan_tui.data import BUNDLED_DIR, load_digits, parse_idx, read_idx, to_tensor
from gan_tui.errors import DataError


def idx_bytes(array: np.ndarray, magic_type: int = 0x08) -> bytes:
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
        struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray,
                compress: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in ((f"{prefix}-images-idx3-ubyte", images),
                        (f"{prefix}-labels-idx1-ubyte", labels)):
        raw = idx_bytes(array)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)


def test_bundled_split_is_the_full_mnist_test_set():
    digits = load_digits()
    assert digits.images.shape == (10_000, 28, 28)
    assert digits.images.dtype == np.uint8
    assert np.bincount(digits.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                   974, 1009]


def test_to_tensor_matches_seed_transforms():
    """Same numbers as the seed's ToTensor() + Normalize([0.5], [0.5]) per image."""
    from PIL import Image
    from torchvision import transforms

    images = load_digits(limit=8).images
    seed = transforms.Compose([transforms.Resize((28, 28)), transforms.ToTensor(),
                               transforms.Normalize([0.5], [0.5])])
    expected = torch.stack([seed(Image.fromarray(img, mode="L")) for img in images])
    ours = to_tensor(images)
    assert ours.shape == (8, 1, 28, 28)
    assert torch.allclose(ours, expected, atol=1e-6)
    assert ours.min() >= -1 and ours.max() <= 1


@pytest.mark.parametrize("raw, problem", [
    (b"", "too short"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (bytes([0, 0, 0x08, 0x05]) + b"\x00" * 20, "bad IDX magic"),
    (bytes([0, 0, 0x0D, 0x03]) + b"\x00" * 12, "bad IDX magic"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "bad IDX magic"),
])
def test_parse_idx_rejects_garbage_with_a_reason(raw, problem):
    with pytest.raises(DataError, match=problem):
        parse_idx(raw, name="x")


def test_truncated_payload_names_sizes():
    raw = idx_bytes(np.zeros((3, 28, 28)))[:-10]
    with pytest.raises(DataError, match=r"3 x 28 x 28 = 2352 bytes, file holds 2342"):
        parse_idx(raw)


def test_read_idx_reads_gzip_and_raw_identically(tmp_path):
    gz = BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz"
    raw_path = tmp_path / "labels"
    raw_path.write_bytes(gzip.decompress(gz.read_bytes()))
    assert np.array_equal(read_idx(gz), read_idx(raw_path))


def test_broken_gzip_is_one_clear_error(tmp_path):
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28))))[:30])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        read_idx(bad)


def test_data_dir_with_raw_and_gz_files_and_all_split(tmp_path):
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (5, 28, 28))
    test_images = rng.integers(0, 256, (3, 28, 28))
    write_split(tmp_path, "train", train_images, np.arange(5) % 10, compress=True)
    write_split(tmp_path, "t10k", test_images, np.arange(3) % 10)
    assert np.array_equal(load_digits(data_dir=str(tmp_path), split="test").images, test_images)
    both = load_digits(data_dir=str(tmp_path), split="all")
    assert np.array_equal(both.images, np.concatenate([train_images, test_images]))
    assert both.labels.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]


@pytest.mark.parametrize("images, labels, problem", [
    (np.zeros((4, 28, 28)), np.zeros(3), "4 images but 3 labels"),
    (np.zeros((4, 32, 32)), np.zeros(4), "32 x 32, gan-tui needs 28 x 28"),
    (np.zeros((0, 28, 28)), np.zeros(0), "no images"),
])
def test_data_dir_mismatches_are_named(tmp_path, images, labels, problem):
    write_split(tmp_path, "t10k", images, labels)
    with pytest.raises(DataError, match=problem):
        load_digits(data_dir=str(tmp_path))


def test_missing_split_and_folder(tmp_path):
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_digits(data_dir=str(tmp_path), split="train")
    with pytest.raises(DataError, match="does not exist"):
        load_digits(data_dir=str(tmp_path / "nope"))


def test_bundled_has_only_the_test_split():
    with pytest.raises(DataError, match="bundled data is the MNIST test split only"):
        load_digits(split="train")


def test_download_uses_cached_files_without_network(tmp_path, monkeypatch):
    """torchvision's MNIST finds files already in the cache and does not download."""
    monkeypatch.setenv("GAN_TUI_CACHE_DIR", str(tmp_path))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((BUNDLED_DIR / f"{name}.gz").read_bytes()))
        # torchvision checks all four files exist; the train split is not read here.
        shutil.copy(raw / name, raw / name.replace("t10k", "train"))
    digits = load_digits(dataset="mnist", split="test")
    assert digits.images.shape == (10_000, 28, 28)
    assert np.array_equal(digits.images, load_digits().images)


def test_download_offline_fails_in_one_line_naming_the_bundled_default(tmp_path, monkeypatch):
    from torchvision import datasets

    monkeypatch.setenv("GAN_TUI_CACHE_DIR", str(tmp_path))
    # A closed local port stands in for "no network", whatever machine runs the test.
    monkeypatch.setattr(datasets.KMNIST, "mirrors", ["http://127.0.0.1:9/"], raising=False)
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as info:
        data.download("kmnist", "test")
    message = str(info.value)
    assert "\n" not in message
    assert "could not download kmnist" in message and "bundled MNIST test split" in message


def test_labels_outside_0_to_9_are_refused_naming_the_file_and_value(tmp_path):
    write_split(tmp_path, "t10k", np.zeros((4, 28, 28)), np.array([1, 2, 200, 3]))
    with pytest.raises(DataError) as info:
        load_digits(data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in message
    assert "label 200 at position 2 is not a digit class 0-9" in message


def lying_images_header(count: int) -> bytes:
    """An image file's header that announces `count` 28 x 28 images, with no body."""
    return bytes([0, 0, 8, 3]) + struct.pack(">3I", count, 28, 28)


@pytest.mark.parametrize("compress", [False, True])
def test_headers_are_checked_against_each_other_before_any_body(tmp_path, compress):
    """A decompression bomb's header (500,000 images beside 100 labels) is refused from
    the headers alone: the image body here is garbage that reading would trip over."""
    body = b"garbage, not a gzip stream or 392 MB of pixels"
    raw = lying_images_header(500_000)
    images = (gzip.compress(raw) + body) if compress else raw + body
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(images)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(100)))
    with pytest.raises(DataError, match=r"500000 images but 100 labels"):
        load_digits(data_dir=str(tmp_path))


def test_a_header_announcing_more_than_a_sane_count_is_refused_before_the_body(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(lying_images_header(2**31) + b"junk")
    labels = bytes([0, 0, 8, 1]) + struct.pack(">I", 2**31) + b"junk"
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(DataError, match=r"2,147,483,648 items; gan-tui reads at most 1,000,000"):
        load_digits(data_dir=str(tmp_path))


def test_a_gz_body_is_read_only_as_far_as_its_header_says(tmp_path):
    """A stream that unpacks to more than the header announces is refused after reading
    one byte past the announced end, whatever follows (here: an endless-looking tail)."""
    raw = idx_bytes(np.zeros((2, 28, 28))) + bytes(10_000_000)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw) + b"not gzip at all")
    with pytest.raises(DataError, match=r"2 x 28 x 28 = 1568 bytes, file holds more than 1568"):
        read_idx(path)
