"""Crop names: the crop a field grows, as a farmer types it, against the crops a model learned.

A learned model's "crop" class is the crop it was trained on (khet-rgb-uav: potato). On another
crop its crop/weed split is untested: what it calls a maize plant, crop or weed, nobody knows,
and a farmer could spray the wrong plants. So a bundle states the crops
it learned (`crops` in its metadata), a field may state its crop (`--crop`, the field's crop in
the app), and a model is not used on a field whose stated crop it did not learn.

Names are compared after folding case, spaces and a plural, and through a small table of the
names farmers in Pakistan and India use for the crops Khet's models know (English, Roman Urdu and
Hindi, Urdu script): "Aloo", "potatoes" and "آلو" are all potato.
"""

from __future__ import annotations

import re
import unicodedata

from khet.errors import InputError

#: Other names of a crop, by its English name. Only crops a shipped model learned need one; a
#: name not here is compared as written (folded).
ALIASES: dict[str, tuple[str, ...]] = {
    "potato": ("aloo", "alu", "aaloo", "आलू", "آلو", "solanum tuberosum"),
    "carrot": ("gajar", "gaajar", "गाजर", "گاجر", "daucus carota"),
}
_CANONICAL = {alias: name for name, names in ALIASES.items() for alias in names}
#: Crops named with a word of another crop's name: "sweet potato" is not a potato.
OTHER_CROPS = ("sweet potato", "shakarkandi", "شکرقندی", "शकरकंद")
_PLURAL = (("oes", "o"), ("ies", "y"), ("s", ""))


def canonical(name: str) -> str:
    """A crop name folded for comparison: lower case, single spaces, no plural, an alias as the
    English name it stands for ("Potatoes" and "aloo" give "potato")."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFC", name)).strip().casefold()
    if text in _CANONICAL:
        return _CANONICAL[text]
    for end, repl in _PLURAL:  # both sides of a comparison are folded alike
        if len(text) > len(end) + 2 and text.endswith(end) and not text.endswith("ss"):
            text = text[: -len(end)] + repl
            break
    return _CANONICAL.get(text, text)


def learned(crop: str | None, crops: tuple[str, ...]) -> bool | None:
    """Whether a model that learned `crops` knows the field's crop `crop`: None when either is
    not stated (nothing to compare). The crop is the whole name, or one of its words when the
    name adds a variety or a season ("Potato (Desiree)", "early potatoes", "seed potato"), unless
    it names another crop that shares the word ("sweet potato")."""
    if not crop or not crop.strip() or not crops:
        return None
    known = {canonical(c) for c in crops}
    whole = canonical(crop)
    if whole in known:
        return True
    folded = crop.casefold()
    if any(other in folded for other in OTHER_CROPS if canonical(other) not in known):
        return False
    words = re.findall(r"[^\W\d_]+", folded)
    return any(canonical(w) in known for w in words)


#: The longest crop name taken (the app's field names are as long).
MAX_LENGTH = 200


def check_crop(crop: str | None) -> str | None:
    """The stated crop, trimmed (None when not stated); InputError for a name that cannot be a
    crop's: not text, longer than MAX_LENGTH characters, or holding control characters."""
    if crop is None:
        return None
    if not isinstance(crop, str):
        raise InputError("The crop must be text, e.g. potato.")
    text = crop.strip()
    if not text:
        return None
    if len(text) > MAX_LENGTH or any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InputError(
            f"The crop must be a name of at most {MAX_LENGTH} characters without control "
            "characters (e.g. potato)."
        )
    return text
