"""LFW 1.0 (Labeled Faces in the Wild, as CVAT writes it through datumaro's ``lfw`` format):
per subset ``<subset>/annotations/pairs.txt``, ``people.txt``, ``landmarks.txt`` (when there
are landmarks) and, with ``save_images``, ``<subset>/images/<person>/<image>``.

A person is a label; an image's identity is its first tag. Its text attributes
``positive_pairs`` and ``negative_pairs`` list the images it is paired with (names such as
``<person>/<person>_<NNNN>``, separated by commas or spaces; a Python-style list
``['a', 'b']`` is read too). ``pairs.txt`` has, as datumaro writes it, a matched pair
``<person>\\t<n1>\\t<n2>`` per positive pair, a mismatched pair
``<person>\\t<n1>\\t<person2>\\t<n2>`` per negative pair (``-`` for a person not among the
labels), then ``<person>/<image>`` for a tagged image without pairs; ``<n>`` is the image's
number when its name is ``<person>_<number>``, else its name. ``people.txt`` has
``<person>\\t<tagged images>`` per label, ``landmarks.txt`` ``<person>/<image>.jpg\\t<x>\\t<y>...``
per ``points`` shape (the person is the shape's label; as in CVAT's datumaro). Untagged
images are left out of the files (their image goes to ``<subset>/images/``). Kept: the first
tag with those two attributes, ``points`` shapes of tagged images; dropped: other tags'
attributes and further tags, every other shape, an ``image_id`` (CVAT's LFW has no such
attribute). Unlike datumaro, a tag whose pair attributes are empty is written as an image
without pairs (datumaro drops it).

Import reads the same files (``annotations/pairs.txt`` under any folder; its parent is the
subset, ``default`` at the top): each image named by a pair or a line gets a tag of its
person, with the images it is paired with in ``positive_pairs``/``negative_pairs`` (joined
with ``, ``; left out where the label lacks them), landmarks become ``points`` shapes of the
person before the ``/``. Images under ``<subset>/images/`` that no file names are items
without annotations (a project import makes frames of them).
"""

from __future__ import annotations

import math
import re

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, LabelDef, Parsed, Shape, Tag

IMAGES_DIR = "images"
ANNOTATION_DIR = "annotations"
PAIRS_FILE = "pairs.txt"
PEOPLE_FILE = "people.txt"
LANDMARKS_FILE = "landmarks.txt"
IMAGE_EXT = ".jpg"
POSITIVE = "positive_pairs"
NEGATIVE = "negative_pairs"
PATTERN = re.compile(r"([\w-]+)_([-\d]+)")
_NUMBER = re.compile(r"-?\d+")
_SPLIT = re.compile(r"[\s,]+")


def _names(value: str) -> list[str]:
    """A pair attribute's image names."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    names = (n.strip().strip("'\"") for n in _SPLIT.split(text))
    return [n for n in names if n]


def _number(item_id: str, person: str) -> str:
    """An image's number in the pairs file: ``<person>_<number>`` gives the number."""
    rest = item_id[len(person) + 1 :] if item_id.startswith(person + "_") else ""
    return str(int(rest)) if _NUMBER.fullmatch(rest) else item_id


def _positive(person: str, pair: str) -> str:
    found = PATTERN.search(pair)
    if found:
        return str(int(found.group(2)))
    return pair[len(person) + 1 :] if pair.startswith(person + "/") else pair


def _negative(pair: str, people: set[str]) -> tuple[str, str]:
    found = PATTERN.search(pair)
    if found:
        return found.group(1), str(int(found.group(2)))
    head, _, rest = pair.partition("/")
    if rest and head in people:
        return head, rest
    return "-", pair


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    people = [label.name for label in ds.meta.labels]
    known = set(people)
    for subset in ds.meta.subsets:
        counts = dict.fromkeys(people, 0)
        positive: list[str] = []
        negative: list[str] = []
        neutral: list[str] = []
        landmarks: list[str] = []
        folders: dict[int, str] = {}
        for item in ds.items(subset):
            tags = [t for t in item.tags if t.label in known]
            if not tags:
                folders[item.frame] = f"{subset}/{IMAGES_DIR}"
                continue
            tag = tags[0]
            person = tag.label
            counts[person] += 1
            folders[item.frame] = f"{subset}/{IMAGES_DIR}/{person}"
            num = _number(item.stem, person)
            pairs = 0
            for pair in _names(tag.attributes.get(POSITIVE, "")):
                positive.append(f"{person}\t{num}\t{_positive(person, pair)}")
                pairs += 1
            for pair in _names(tag.attributes.get(NEGATIVE, "")):
                person2, num2 = _negative(pair, known)
                negative.append(f"{person}\t{num}\t{person2}\t{num2}")
                pairs += 1
            if not pairs:
                neutral.append(f"{person}/{item.stem}")
            for s in item.shapes:
                if s.type == "points" and s.label in known:
                    coords = "\t".join(str(float(v)) for v in s.points)
                    landmarks.append(f"{s.label}/{item.stem}{IMAGE_EXT}\t{coords}")
        base = f"{subset}/{ANNOTATION_DIR}"
        lines = positive + negative + neutral
        out.write(f"{base}/{PAIRS_FILE}", "".join(f"{x}\n" for x in lines).encode(), True)
        if landmarks:
            body = "".join(f"{x}\n" for x in landmarks).encode()
            out.write(f"{base}/{LANDMARKS_FILE}", body, compress=True)
        if people:
            body = "".join(f"{p}\t{n}\n" for p, n in counts.items()).encode()
            out.write(f"{base}/{PEOPLE_FILE}", body, compress=True)
        if save_images:
            for item, data, ext in ds.images(subset):
                if item.frame in folders:
                    out.write(f"{folders[item.frame]}/{item.stem}{ext}", data)


# ---------------------------------------------------------------------------------- import


def _image_name(person: str, image: str) -> tuple[str, str]:
    """(path below ``images/`` without the extension, item name) of a pair's image."""
    if _NUMBER.fullmatch(image):
        item_id = f"{person}_{int(image):04d}"
        return f"{person}/{item_id}", item_id
    return f"{person}/{image}", image


class _Subset:
    def __init__(self, archive: Archive, root: str, subset: str) -> None:
        self.archive = archive
        self.root = root
        self.subset = subset
        self.images: dict[str, str] = {}  # path below images/ without the extension
        prefix = f"{root}{IMAGES_DIR}/"
        for name in archive.names():
            if name.startswith(prefix) and "." in name.rpartition("/")[2]:
                self.images.setdefault(name[len(prefix) :].rpartition(".")[0], name)
        self.items: dict[str, Item] = {}
        self.labels: list[str] = []

    def _person(self, name: str, where: str) -> str:
        if not name or "/" in name:
            raise InvalidInput(f"{where}: {name!r} is not a person's name.")
        if name not in self.labels:
            self.labels.append(name)
        return name

    def item(self, item_id: str, image: str, person: str | None) -> Item:
        item = self.items.get(item_id)
        if item is None:
            item = Item(-1, item_id, subset=self.subset, image=self.images.get(image, ""))
            if person is not None:
                item.tags.append(Tag(person))
            self.items[item_id] = item
        return item

    @staticmethod
    def _add(item: Item, person: str, attribute: str, image: str) -> None:
        if not item.tags:
            item.tags.append(Tag(person))
        attrs = item.tags[0].attributes
        attrs[attribute] = f"{attrs[attribute]}, {image}" if attrs.get(attribute) else image

    def pairs(self, name: str) -> None:
        for n, line in enumerate(self.archive.text(name).splitlines(), 1):
            where = f"{name}:{n}"
            fields = line.strip().split("\t")
            if fields == [""]:
                continue
            if len(fields) == 1:
                path = fields[0]
                head, _, rest = path.partition("/")
                if rest:
                    self.item(rest, path, self._person(head, where))
                else:
                    self.item(path, path, None)
            elif len(fields) == 2 and all(_NUMBER.fullmatch(f) for f in fields):
                continue  # the original LFW's header: '<sets>\t<pairs per set>'
            elif len(fields) == 3:
                person = self._person(fields[0], where)
                image1, id1 = _image_name(person, fields[1])
                image2, id2 = _image_name(person, fields[2])
                first = self.item(id1, image1, person)
                self.item(id2, image2, person)
                self._add(first, person, POSITIVE, image2)
            elif len(fields) == 4:
                person = self._person(fields[0], where)
                image1, id1 = _image_name(person, fields[1])
                if fields[2] == "-":
                    image2, id2, person2 = fields[3], fields[3], None
                else:
                    person2 = self._person(fields[2], where)
                    image2, id2 = _image_name(person2, fields[3])
                first = self.item(id1, image1, person)
                self.item(id2, image2, person2)
                self._add(first, person, NEGATIVE, image2)
            else:
                raise InvalidInput(
                    f"{where}: expected '<person>/<image>', '<person>\\t<n1>\\t<n2>' or "
                    f"'<person>\\t<n1>\\t<person2>\\t<n2>' (tab-separated), not {line.strip()!r}."
                )

    def landmarks(self, name: str) -> None:
        for n, line in enumerate(self.archive.text(name).splitlines(), 1):
            where = f"{name}:{n}"
            fields = line.rstrip("\r\n").split("\t")
            if not fields[0].strip():
                continue
            path = fields[0].strip()
            image = path.rpartition(".")[0] if "." in path.rpartition("/")[2] else path
            head, _, item_id = image.partition("/")
            if not item_id:
                raise InvalidInput(
                    f"{where}: the landmarks of {path!r} have no person (expected "
                    "'<person>/<image>' first)."
                )
            person = self._person(head, where)
            try:
                coords = [float(v) for v in fields[1:] if v.strip()]
            except ValueError:
                raise InvalidInput(f"{where}: the landmarks must be numbers.") from None
            if not coords or len(coords) % 2 or not all(math.isfinite(v) for v in coords):
                raise InvalidInput(f"{where}: expected x and y numbers for each landmark.")
            item = self.item(item_id, image, None)
            item.shapes.append(Shape("points", person, coords))

    def rest(self) -> None:
        """Images no file names: items without annotations."""
        named = {item.image for item in self.items.values()}
        for path, member in self.images.items():
            if member not in named and path not in self.items:
                self.items[path] = Item(-1, path, subset=self.subset, image=member)


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("LFW 1.0 is imported from a ZIP archive.")
    suffix = f"{ANNOTATION_DIR}/{PAIRS_FILE}"
    found = [n for n in archive.names(PAIRS_FILE) if n == suffix or n.endswith("/" + suffix)]
    if not found:
        raise InvalidInput(f"The archive has no {suffix} (<subset>/{suffix}).")
    parsed = Parsed(soft_attributes=frozenset({POSITIVE, NEGATIVE}))
    labels: dict[str, None] = {}
    for pairs in found:
        folder = pairs[: -len(suffix)]  # "<subset>/" (any folders above it kept) or ""
        subset = folder.rstrip("/").rpartition("/")[2] or "default"
        part = _Subset(archive, folder, subset)
        people = f"{folder}{ANNOTATION_DIR}/{PEOPLE_FILE}"
        if people in archive.names(PEOPLE_FILE):
            for line in archive.text(people).splitlines():
                fields = line.strip().split("\t")
                if len(fields) == 2 and fields[0]:
                    labels.setdefault(fields[0])
        part.pairs(pairs)
        marks = f"{folder}{ANNOTATION_DIR}/{LANDMARKS_FILE}"
        if marks in archive.names(LANDMARKS_FILE):
            part.landmarks(marks)
        part.rest()
        labels.update(dict.fromkeys(part.labels))
        parsed.items.extend(part.items.values())
    parsed.labels = [LabelDef(name) for name in labels]
    return parsed
