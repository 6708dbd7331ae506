"""The dataset formats CVAT lists, and which of them this server reads or writes.

Display names are CVAT's (``"{NAME} {VERSION}"``); ``GET /api/server/annotation/formats``
lists every format CVAT 2.80 has, with ``enabled: false`` for those not built here. A built
format is one module of this package with ``write`` (an exporter) and/or ``read`` (an
importer) over the intermediate model (:mod:`cvat_ray.storage.formats.model`); adding one is
that module plus its lines in :data:`_BUILT_EXPORT` / :data:`_BUILT_IMPORT`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from cvat_ray.cluster.errors import InvalidInput


@dataclass(frozen=True)
class FormatInfo:
    name: str
    version: str
    ext: str
    dimension: str = "2d"

    @property
    def display(self) -> str:
        return f"{self.name} {self.version}"


def _f(name: str, version: str, ext: str = "ZIP", dimension: str = "2d") -> FormatInfo:
    return FormatInfo(name, version, ext, dimension)


# CVAT 2.80's exporters and importers, in CVAT's order (alphabetical by display name).
EXPORTERS: tuple[FormatInfo, ...] = (
    _f("CamVid", "1.0"),
    _f("Cityscapes", "1.0"),
    _f("COCO", "1.0"),
    _f("COCO Keypoints", "1.0"),
    _f("CVAT for images", "1.1"),
    _f("CVAT for video", "1.1"),
    _f("Datumaro", "1.0"),
    _f("Datumaro 3D", "1.0", dimension="3d"),
    _f("Generic TSV", "1.0", dimension="1d"),
    _f("ICDAR Localization", "1.0"),
    _f("ICDAR Recognition", "1.0"),
    _f("ICDAR Segmentation", "1.0"),
    _f("ImageNet", "1.0"),
    _f("KITTI", "1.0"),
    _f("Kitti Raw Format", "1.0", dimension="3d"),
    _f("LabelMe", "3.0"),
    _f("LFW", "1.0"),
    _f("Market-1501", "1.0"),
    _f("MOT", "1.1"),
    _f("MOTS PNG", "1.0"),
    _f("Open Images V6", "1.0"),
    _f("PASCAL VOC", "1.1"),
    _f("Segmentation mask", "1.1"),
    _f("Sly Point Cloud Format", "1.0", dimension="3d"),
    _f("Ultralytics YOLO Classification", "1.0"),
    _f("Ultralytics YOLO Detection", "1.0"),
    _f("Ultralytics YOLO Detection Track", "1.0"),
    _f("Ultralytics YOLO Oriented Bounding Boxes", "1.0"),
    _f("Ultralytics YOLO Pose", "1.0"),
    _f("Ultralytics YOLO Segmentation", "1.0"),
    _f("VGGFace2", "1.0"),
    _f("WiderFace", "1.0"),
    _f("YOLO", "1.1"),
)

IMPORTERS: tuple[FormatInfo, ...] = (
    _f("CamVid", "1.0"),
    _f("Cityscapes", "1.0"),
    _f("COCO", "1.0", "JSON, ZIP"),
    _f("COCO Keypoints", "1.0", "JSON, ZIP"),
    _f("CVAT", "1.1", "XML, ZIP"),
    _f("Datumaro", "1.0", "JSON, ZIP"),
    _f("Datumaro 3D", "1.0", dimension="3d"),
    _f("Generic TSV", "1.0", "TSV, ZIP", dimension="1d"),
    _f("ICDAR Localization", "1.0"),
    _f("ICDAR Recognition", "1.0"),
    _f("ICDAR Segmentation", "1.0"),
    _f("ImageNet", "1.0"),
    _f("KITTI", "1.0"),
    _f("Kitti Raw Format", "1.0", "ZIP, XML", dimension="3d"),
    _f("LabelMe", "3.0"),
    _f("LFW", "1.0"),
    _f("Market-1501", "1.0"),
    _f("MOT", "1.1"),
    _f("MOTS PNG", "1.0"),
    _f("Open Images V6", "1.0"),
    _f("PASCAL VOC", "1.1"),
    _f("Segmentation mask", "1.1"),
    _f("Sly Point Cloud Format", "1.0", dimension="3d"),
    _f("Ultralytics YOLO Classification", "1.0"),
    _f("Ultralytics YOLO Detection", "1.0"),
    _f("Ultralytics YOLO Oriented Bounding Boxes", "1.0"),
    _f("Ultralytics YOLO Pose", "1.0"),
    _f("Ultralytics YOLO Segmentation", "1.0"),
    _f("VGGFace2", "1.0"),
    _f("WiderFace", "1.0"),
    _f("YOLO", "1.1"),
)

# display name -> module of this package that implements it (export side, import side)
_BUILT_EXPORT: dict[str, str] = {
    "CVAT for images 1.1": "cvat_xml",
    "CVAT for video 1.1": "cvat_xml",
    "COCO 1.0": "coco",
    "YOLO 1.1": "yolo",
    "Datumaro 1.0": "datumaro",
    "PASCAL VOC 1.1": "voc",
    "Ultralytics YOLO Detection 1.0": "ultralytics",
    "Ultralytics YOLO Segmentation 1.0": "ultralytics",
    "Ultralytics YOLO Oriented Bounding Boxes 1.0": "ultralytics",
    "MOT 1.1": "mot",
    "Segmentation mask 1.1": "segmentation_mask",
    "COCO Keypoints 1.0": "coco_keypoints",
    "LabelMe 3.0": "labelme",
    "ImageNet 1.0": "imagenet",
    "Ultralytics YOLO Pose 1.0": "ultralytics",
    "Ultralytics YOLO Classification 1.0": "ultralytics_classification",
    "Market-1501 1.0": "market1501",
    "WiderFace 1.0": "widerface",
    "CamVid 1.0": "camvid",
    "Cityscapes 1.0": "cityscapes",
    "KITTI 1.0": "kitti",
    "Open Images V6 1.0": "open_images",
    "ICDAR Localization 1.0": "icdar",
    "ICDAR Recognition 1.0": "icdar",
    "ICDAR Segmentation 1.0": "icdar",
    "VGGFace2 1.0": "vggface2",
    "LFW 1.0": "lfw",
    "MOTS PNG 1.0": "mots",
    "Ultralytics YOLO Detection Track 1.0": "ultralytics",
}
_BUILT_IMPORT: dict[str, str] = {
    "CVAT 1.1": "cvat_xml",
    "COCO 1.0": "coco",
    "YOLO 1.1": "yolo",
    "Datumaro 1.0": "datumaro",
    "PASCAL VOC 1.1": "voc",
    "Ultralytics YOLO Detection 1.0": "ultralytics",
    "Ultralytics YOLO Segmentation 1.0": "ultralytics",
    "Ultralytics YOLO Oriented Bounding Boxes 1.0": "ultralytics",
    "MOT 1.1": "mot",
    "Segmentation mask 1.1": "segmentation_mask",
    "COCO Keypoints 1.0": "coco_keypoints",
    "LabelMe 3.0": "labelme",
    "ImageNet 1.0": "imagenet",
    "Ultralytics YOLO Pose 1.0": "ultralytics",
    "Ultralytics YOLO Classification 1.0": "ultralytics_classification",
    "Market-1501 1.0": "market1501",
    "WiderFace 1.0": "widerface",
    "CamVid 1.0": "camvid",
    "Cityscapes 1.0": "cityscapes",
    "KITTI 1.0": "kitti",
    "Open Images V6 1.0": "open_images",
    "ICDAR Localization 1.0": "icdar",
    "ICDAR Recognition 1.0": "icdar",
    "ICDAR Segmentation 1.0": "icdar",
    "VGGFace2 1.0": "vggface2",
    "LFW 1.0": "lfw",
    "MOTS PNG 1.0": "mots",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"cvat_ray.storage.formats.{name}")


def export_enabled(display: str) -> bool:
    return display in _BUILT_EXPORT


def import_enabled(display: str) -> bool:
    return display in _BUILT_IMPORT


def _lookup(display: str | None, side: str, built: dict[str, str]) -> str:
    names = sorted(built)
    listed = {f.display for f in (EXPORTERS if side == "export" else IMPORTERS)}
    if not display:
        raise InvalidInput(
            f"Give the {side} format; available: {', '.join(names)}.", field="format"
        )
    if display not in built:
        if display in listed:
            known = "is not available yet"
        elif display in _BUILT_EXPORT or display in _BUILT_IMPORT:
            known = "cannot be used"  # an export-only format, or the import-only CVAT 1.1
        else:
            known = "is not a known format"
        raise InvalidInput(
            f"'{display}' {known} for {side}; available: {', '.join(names)}.", field="format"
        )
    return built[display]


def exporter(display: str | None) -> ModuleType:
    """The module that writes ``display``; a 400 listing the available ones otherwise."""
    return _module(_lookup(display, "export", _BUILT_EXPORT))


def importer(display: str | None) -> ModuleType:
    """The module that reads ``display``; a 400 listing the available ones otherwise."""
    return _module(_lookup(display, "import", _BUILT_IMPORT))


def check_export(display: str | None) -> str:
    _lookup(display, "export", _BUILT_EXPORT)
    assert display is not None
    return display


def check_import(display: str | None) -> str:
    _lookup(display, "import", _BUILT_IMPORT)
    assert display is not None
    return display


def listing() -> dict[str, list[dict[str, object]]]:
    """The body of ``GET /api/server/annotation/formats``."""

    def rows(infos: tuple[FormatInfo, ...], built: dict[str, str]) -> list[dict[str, object]]:
        return [
            {
                "name": f.display,
                "ext": f.ext,
                "version": f.version,
                "enabled": f.display in built,
                "dimension": f.dimension,
            }
            for f in infos
        ]

    return {
        "importers": rows(IMPORTERS, _BUILT_IMPORT),
        "exporters": rows(EXPORTERS, _BUILT_EXPORT),
    }
