"""Crop names: the crop a field grows, as a farmer types it, against the crops a model learned.

A learned model's "crop" class is the crop it was trained on (khet-rgb-uav: potato). On another
crop its crop/weed split is untested: what it calls a maize plant, crop or weed, nobody knows,
and a farmer could spray the wrong plants. So a bundle states the crops
it learned (`crops` in its metadata), a field may state its crop (`--crop`, the field's crop in
the app), and a model is not used on a field whose stated crop it did not learn.

Names are compared after folding case, spaces and a plural, and through a small table of the
names farmers in Pakistan and India use for the crops Khet's models know (English, Roman Urdu and
Hindi, Urdu script): "Aloo", "potatoes" and "آلو" are all potato.

A field that grows another crop beside the learned one (an intercrop, common on small farms:
"potato-maize", "aloo aur makai") is not the learned crop either: the model's crop class is the
one crop, so the other crop's plants would be painted whatever it takes them for, weed most
likely. Such names are recognised by `CROP_WORDS`, common crops in the same languages.
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

#: Common crops by the names farmers type: English, Roman Urdu and Hindi, Urdu and Hindi script
#: (folded: lower case, singular). Words that are also everyday words ("jo", "til", "orange")
#: are left out: a crop's variety or season written beside it must not read as a second crop.
CROP_WORDS = frozenset(
    """
    potato carrot maize corn wheat rice paddy cotton sugarcane cane beet sugarbeet onion garlic
    tomato chili chilli chily pepper capsicum eggplant brinjal aubergine okra cabbage cauliflower
    broccoli spinach lettuce cucumber pumpkin squash melon watermelon gourd bean pea chickpea
    lentil mungbean soybean soya groundnut peanut sunflower mustard canola rapeseed sorghum
    millet barley oat tobacco cassava yam banana alfalfa lucerne berseem clover turnip radish
    ginger turmeric sesame cowpea grape mango citrus
    makai makki makka gandum gehun gehu chawal dhan kapas narma ganna kamad pyaz piaz payaz
    lehsun lahsun tamatar mirch baingan bhindi gobhi palak kheera kaddu matar chana channa masoor
    moong maash urad mungphali moongphali mongphali surajmukhi sarson jowar bajra tambaku shaljam
    mooli adrak haldi
    مکئی مکی گندم چاول دھان کپاس نرما گنا پیاز لہسن ٹماٹر مرچ بینگن بھنڈی گوبھی پالک کھیرا کدو
    مٹر چنا مسور مونگ ماش سرسوں جوار باجرہ تمباکو شلجم مولی برسیم ادرک ہلدی مونگپھلی
    मक्का मक्की गेहूं गेहूँ चावल धान कपास गन्ना प्याज लहसुन टमाटर मिर्च बैंगन भिंडी गोभी पालक
    खीरा कद्दू मटर चना मसूर मूंग उड़द सरसों ज्वार बाजरा तंबाकू शलजम मूली अदरक हल्दी मूंगफली
    सोयाबीन
    """.split()
)


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
    it names another crop that shares the word ("sweet potato") or a crop grown beside it
    ("potato-maize": see `others`)."""
    if not crop or not crop.strip() or not crops:
        return None
    known = {canonical(c) for c in crops}
    if canonical(crop) in known:
        return True
    if others(crop, crops):
        return False
    return any(canonical(w) in known for w in _words(crop))


def others(crop: str | None, crops: tuple[str, ...]) -> list[str]:
    """The crops that `crop` names and a model that learned `crops` did not, as written: the
    whole name when it names no learned crop ("maize"), the other crop of an intercrop
    ("maize" in "potato-maize", "مکئی" in "آلو اور مکئی"), "sweet potato" beside a potato model."""
    if not crop or not crop.strip():
        return []
    known = {canonical(c) for c in crops}
    text = re.sub(r"\s+", " ", crop.strip())
    if canonical(text) in known:
        return []
    found = [o for o in OTHER_CROPS if o in text.casefold() and canonical(o) not in known]
    rest = text
    for o in found:  # "sweet potato" is not also a potato
        rest = re.sub(re.escape(o), " ", rest, flags=re.IGNORECASE)
    words = _words(rest)
    if not any(canonical(w) in known for w in words):
        return [text]
    found += [
        w for w in words if (w.casefold() in CROP_WORDS or canonical(w) in CROP_WORDS)
        and canonical(w) not in known
    ]  # fmt: skip
    return list(dict.fromkeys(found))


def _words(text: str) -> list[str]:
    """The words of a name: runs of letters and the marks that go with them (a Hindi vowel sign
    is a mark, not a break: "आलू" is one word)."""
    out: list[str] = []
    word: list[str] = []
    for ch in text + " ":
        if unicodedata.category(ch)[0] in "LM":
            word.append(ch)
        elif word:
            out.append("".join(word))
            word = []
    return out


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
