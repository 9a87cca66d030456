"""Crop names as farmers type them against the crops a model learned (vision/crops.py), and the
crops a bundle states in its metadata."""

from __future__ import annotations

import pytest
from khet.vision.bundle import BundleInfo, ClassInfo
from khet.vision.crops import canonical, check_crop, learned, others

from khet.errors import InputError


@pytest.mark.parametrize("said", ["potato", "Potato", " POTATOES ", "aloo", "alu", "آلو", "आलू"])
def test_the_names_of_potato_are_potato(said):
    assert canonical(said) == "potato"
    assert learned(said, ("potato",)) is True


@pytest.mark.parametrize("said", ["maize", "wheat", "sweet potato", "tomato", "carrot", "گاجر"])
def test_other_crops_are_not_potato(said):
    assert learned(said, ("potato",)) is False


def test_plurals_fold_alike_for_a_crop_not_in_the_table():
    """A model of a user's that learned "tomato" serves "Tomatoes"; "grass" keeps its s."""
    assert learned("Tomatoes", ("tomato",)) is True
    assert learned("lentils", ("Lentil",)) is True
    assert canonical("grass") == "grass"


@pytest.mark.parametrize(
    ("said", "knows"),
    [
        ("Potato (Desiree)", True),
        ("early potatoes", True),
        ("Aloo 2026", True),
        ("آلو کی فصل", True),
        ("Sweet potato", False),
        ("sweet potatoes", False),
        ("potatoless", False),
    ],
)
def test_a_variety_or_season_beside_the_crop_is_still_the_crop(said, knows):
    assert learned(said, ("potato",)) is knows
    assert learned("Sweet potato", ("sweet potato",)) is True  # a model that learned it


@pytest.mark.parametrize(
    ("said", "other"),
    [
        ("potato-maize", "maize"),
        ("Potato + Maize", "Maize"),
        ("potatoes with beans", "beans"),
        ("potato/wheat", "wheat"),
        ("aloo aur makai", "makai"),
        ("آلو اور مکئی", "مکئی"),
        ("आलू और मक्का", "मक्का"),
        ("sweet potato and potato", "sweet potato"),
    ],
)
def test_a_field_that_grows_another_crop_beside_potato_is_not_potato(said, other):
    """An intercrop: the model's crop class is potato alone, so the other crop's plants would be
    painted as whatever it takes them for (weed, most likely), and a farmer could spray them."""
    assert learned(said, ("potato",)) is False
    assert others(said, ("potato",)) == [other]
    # A model that learned both crops knows the field.
    if other.casefold() in ("maize", "wheat", "beans"):
        assert learned(said, ("potato", other.casefold().rstrip("s"))) is True


@pytest.mark.parametrize(
    "said", ["Potato - Desiree", "आलू की फसल", "seed potatoes", "Aloo (rabi 2026)"]
)
def test_words_beside_the_crop_that_are_no_crop_are_not_another_crop(said):
    """A variety, a season or "crop" in Hindi ("की फसल": a Hindi vowel sign does not break a
    word) beside potato is still potato."""
    assert learned(said, ("potato",)) is True and others(said, ("potato",)) == []


def test_nothing_to_compare_is_none():
    assert learned(None, ("potato",)) is None
    assert learned("  ", ("potato",)) is None
    assert learned("maize", ()) is None  # a model that states no crop


def test_a_stated_crop_is_checked():
    assert check_crop(None) is None and check_crop("   ") is None
    assert check_crop("  Aloo ") == "Aloo"
    for bad in ("x" * 201, "pot\x00ato", "mai\nze"):
        with pytest.raises(InputError, match="crop must be a name"):
            check_crop(bad)
    with pytest.raises(InputError, match="must be text"):
        check_crop(3)


def test_a_bundle_carries_its_crops_in_its_metadata():
    info = BundleInfo(
        name="m",
        version="1",
        classes=(ClassInfo("soil", "#000000"),),
        bands=("red",),
        tile_size=64,
        crops=("potato", "carrot"),
    )
    meta = info.to_metadata()
    assert meta["crops"] == "potato,carrot"
    assert BundleInfo.from_metadata(meta).crops == ("potato", "carrot")
    del meta["crops"]  # a bundle written before crops were stated
    assert BundleInfo.from_metadata(meta).crops == ()
