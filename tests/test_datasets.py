"""The offline digits dataset matches scikit-learn's own images and labels."""
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from sparkdl_magics.datasets import write_digits
from sparkdl_magics.errors import OptionError


def test_write_digits_makes_one_folder_per_class_with_requested_counts(tmp_path):
    counts = write_digits(tmp_path, per_class=7, size=32)
    assert counts == {str(d): 7 for d in range(10)}
    for digit in range(10):
        files = sorted((tmp_path / str(digit)).glob("*.png"))
        assert len(files) == 7
        assert Image.open(files[0]).size == (32, 32)


def test_write_digits_again_with_fewer_leaves_only_the_new_files(tmp_path):
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "notes.txt").write_text("the user's own file")
    write_digits(tmp_path, per_class=10, size=16)
    assert write_digits(tmp_path, per_class=6, size=16) == {str(d): 6 for d in range(10)}
    for digit in range(10):
        assert len(list((tmp_path / str(digit)).glob("*.png"))) == 6
    assert (tmp_path / "3" / "notes.txt").exists()


def test_write_photo_crops_again_with_fewer_leaves_only_the_new_files(tmp_path):
    from sparkdl_magics.datasets import write_photo_crops
    write_photo_crops(tmp_path, per_class=4, size=32)
    write_photo_crops(tmp_path, per_class=2, size=32)
    assert len(list((tmp_path / "china").glob("*.jpg"))) == 2


def test_write_digits_all_images_are_the_sklearn_scans(tmp_path):
    write_digits(tmp_path, per_class=None, size=8)
    digits = load_digits()
    assert sum(len(list((tmp_path / str(d)).glob("*.png"))) for d in range(10)) == len(digits.target)
    first_zero = np.asarray(Image.open(tmp_path / "0" / "0_0000.png"), dtype=float)
    expected = 255 - digits.images[np.flatnonzero(digits.target == 0)[0]] * (255 / 16)
    assert np.abs(first_zero - expected).max() <= 1.0


def test_write_digits_rejects_nonpositive_count(tmp_path):
    with pytest.raises(OptionError, match="per_class must be at least 1"):
        write_digits(tmp_path, per_class=0)


def test_write_photo_crops_two_real_photo_classes_seeded(tmp_path):
    from sparkdl_magics.datasets import write_photo_crops
    counts = write_photo_crops(tmp_path / "a", per_class=3, size=48)
    assert counts == {"china": 3, "flower": 3}
    files = sorted((tmp_path / "a" / "flower").glob("*.jpg"))
    assert len(files) == 3 and Image.open(files[0]).size == (48, 48)
    assert Image.open(files[0]).mode == "RGB"
    write_photo_crops(tmp_path / "b", per_class=3, size=48)
    again = tmp_path / "b" / "flower" / files[0].name
    assert again.read_bytes() == files[0].read_bytes()
    with pytest.raises(OptionError):
        write_photo_crops(tmp_path, per_class=0)
