"""Training-time augmentation: seeded copies of the train split, from the same bytes."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import SMALL, binary_images, image_set_of


def test_augment_option_forms_and_errors():
    from sparkdl_magics.augment import Augmentation, parse_augment
    from sparkdl_magics.errors import OptionError
    assert parse_augment(None) is None and parse_augment("none") is None
    assert parse_augment(True) == Augmentation(1, True, 10.0)
    assert parse_augment(3) == Augmentation(3, True, 10.0)
    assert parse_augment("flip, rotate=15, copies=2") == Augmentation(2, True, 15.0)
    assert parse_augment({"rotate": 5}) == Augmentation(1, False, 5.0)
    with pytest.raises(OptionError, match="unknown operation 'rotte'.*did you mean 'rotate'"):
        parse_augment("flip, rotte=3")
    with pytest.raises(OptionError, match="copies must be 1 to 20"):
        parse_augment(0)


def test_transform_is_a_function_of_seed_path_and_copy():
    from sparkdl_magics.augment import Augmentation
    aug = Augmentation(copies=2, flip=True, rotate=10)
    assert aug.params(1, "a.jpg", 1) == aug.params(1, "a.jpg", 1)
    drawn = {aug.params(s, p, c) for s in (1, 2) for p in ("a.jpg", "b.jpg") for c in (1, 2)}
    assert len(drawn) > 4 and all(abs(angle) <= 10 for _, angle in drawn)
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:, :2] = 255
    flipped = aug.apply(image, True, 0.0)
    assert (flipped[:, -2:] == 255).all() and (flipped[:, :2] == 0).all()


def test_featurize_augment_adds_seeded_rows_to_the_train_split_only(spark, image_folder):
    from sparkdl_magics import featurize
    from sparkdl_magics.augment import Augmentation
    df = binary_images(spark, image_folder / "daisy")
    train, test = df.filter("path not like '%0001%'").limit(4), df.filter("path like '%0001%'")

    images = image_set_of(train, test, ["daisy", "roses", "tulips"])

    def run(seed):
        fs = featurize(images, model=SMALL, weights="none", augment="flip, rotate=10, copies=2",
                       seed=seed, batch_size=4)
        rows = fs.train.select("path", "augmentation", "features").collect()
        return fs, {(r["path"], r["augmentation"] or ""): r["features"].toArray() for r in rows}

    fs, first = run(7)
    assert fs.stats["per_split"] == {"train": 12, "test": 1}  # 4 + 4 x 2 copies; test as is
    assert fs.test.count() == 1 and "augmentation" not in fs.test.columns
    paths = {p for p, _ in first}
    aug = Augmentation(2, True, 10.0)
    from sparkdl_magics.augment import describe
    want_keys = {(p, "") for p in paths} | {(p, describe(*aug.params(7, p, c)))
                                             for p in paths for c in (1, 2)}
    assert set(first) == want_keys
    # each augmented row is the model on the decoded, transformed bytes (computed here)
    from sparkdl_magics import inference
    from sparkdl_magics.weights import resolve_spec
    from helpers import local_path
    spec = resolve_spec(SMALL, "none").spec
    by_desc = {(p, describe(*aug.params(7, p, c))): aug.params(7, p, c)
               for p in paths for c in (1, 2)}
    for (p, a), vec in first.items():
        array = inference.decode_bytes(open(local_path(p), "rb").read(), spec.input_size)
        if a:
            changed = aug.apply(array, *by_desc[(p, a)])
            assert not np.array_equal(changed, array)
            array = changed
        want = inference.predict_images(spec, array[None])[0]
        np.testing.assert_allclose(vec, want, rtol=1e-4, atol=1e-5)
    fs.unpersist()
    other_fs, other = run(8)  # another seed, other transforms
    assert set(other) != set(first) and len(other) == len(first)
    other_fs.unpersist()
