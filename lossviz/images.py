"""Image-folder datasets of deep metric learning, read from disk in their standard layouts.

Nothing here downloads anything: point :func:`read_splits` at a folder you already have.
The train/test splits are the zero-shot ones of Oh Song et al. (2016), used by the whole
literature since: the *classes* are split, so no test class is ever seen in training.

* ``cub200``, CUB-200-2011: ``images/<NNN.Class_name>/*.jpg`` (and optionally ``images.txt`` +
  ``image_class_labels.txt``). Classes 1-100 train, 101-200 test.
* ``cars196``, Cars196: ``car_ims/*.jpg`` + ``cars_annos.mat`` (fields ``relative_im_path`` and
  ``class`` of its ``annotations``); or ``cars_train/`` + ``cars_test/`` with the devkit's
  ``cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat`` (fields ``fname``, ``class``),
  pooled. Classes 1-98 train, 99-196 test.
* ``sop``, Stanford Online Products: ``Ebay_train.txt`` and ``Ebay_test.txt`` (header
  ``image_id class_id super_class_id path``, paths relative to the folder). Train and test as the
  two files say (11,318 and 11,316 classes).

Labels are remapped to ``0 .. C-1`` within each split, in the order of the original class ids.
:class:`ImageDataset` loads, resizes, crops, flips and normalises images with PIL and torch only.
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass

import numpy as np
import torch

#: ImageNet channel statistics (what ImageNet-pretrained backbones expect).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class ImageSplits:
    """Image paths and integer labels (``0 .. C-1`` within each split) of a train/test split."""

    layout: str
    root: pathlib.Path
    train_paths: list
    train_labels: list
    test_paths: list
    test_labels: list

    @property
    def train_classes(self) -> int:
        return len(set(self.train_labels))

    @property
    def test_classes(self) -> int:
        return len(set(self.test_labels))

    def __repr__(self) -> str:
        return (f"ImageSplits({self.layout} at {str(self.root)!r}: "
                f"train {len(self.train_paths)} images in {self.train_classes} classes, "
                f"test {len(self.test_paths)} images in {self.test_classes} classes)")


def _remap(labels: list) -> list:
    """Class ids -> 0 .. C-1, in the order of the ids."""
    index = {c: i for i, c in enumerate(sorted(set(labels)))}
    return [index[c] for c in labels]


def _split_by_class(root, layout, paths, classes, is_train) -> ImageSplits:
    """Split (path, class id) pairs by ``is_train(class id)`` and remap labels per split."""
    tr = [i for i, c in enumerate(classes) if is_train(c)]
    te = [i for i, c in enumerate(classes) if not is_train(c)]
    if not tr or not te:
        empty = "train" if not tr else "test"
        raise ValueError(f"{layout} at {root}: the class split left the {empty} split empty "
                         f"(class ids found: {min(classes)}..{max(classes)})")
    return ImageSplits(layout, pathlib.Path(root),
                       [paths[i] for i in tr], _remap([classes[i] for i in tr]),
                       [paths[i] for i in te], _remap([classes[i] for i in te]))


def _text(path: pathlib.Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as err:  # a ValueError whose message would not name the file
        raise ValueError(f"{path}: not a text file (byte {err.start} is not UTF-8)") from None


def _rows(path: pathlib.Path, columns: str | None = None) -> list:
    """The rows of a whitespace-separated list file as ``(line number, {column: value})``.

    ``columns`` names the fields (``None``: the file's first line does); the last field takes the
    rest of the line, so a path may hold spaces.  Fields named ``*_id`` are integers.  A line with
    too few fields or a non-integer id is a ValueError naming the file and the line.
    """
    lines = [(n, line) for n, line in enumerate(_text(path).splitlines(), 1) if line.strip()]
    if columns is None:
        columns = lines.pop(0)[1] if lines else ""
    names = columns.split()
    rows = []
    for number, line in lines:
        fields = line.split(maxsplit=len(names) - 1)
        try:
            if len(fields) != len(names):
                raise ValueError
            rows.append((number, {name: int(value) if name.endswith("_id") else value
                                  for name, value in zip(names, fields)}))
        except ValueError:
            raise ValueError(f"{path}, line {number}: expected '{' '.join(names)}'; "
                             f"got {line.strip()!r}") from None
    if not rows:
        raise ValueError(f"{path} lists no images")
    return rows


def _by_image_id(path: pathlib.Path, columns: str) -> dict:
    """``image_id -> the other field`` of a two-column CUB list file; a repeated id is an error."""
    found, other = {}, columns.split()[1]
    for number, row in _rows(path, columns):
        if row["image_id"] in found:
            raise ValueError(f"{path}, line {number}: image id {row['image_id']} appears twice")
        found[row["image_id"]] = row[other]
    return found


def _is_image(path: pathlib.Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def read_cub200(root, *, train_classes: int = 100) -> ImageSplits:
    """CUB-200-2011: classes ``1..train_classes`` train, the rest test.

    With ``images.txt`` and ``image_class_labels.txt`` the official lists are used; otherwise every
    image under ``images/<NNN.Class_name>/`` is taken, with class id ``NNN`` (the folder's number;
    folders without a number are numbered 1, 2, ... in sorted order).  ``train_test_split.txt`` is
    not read: metric learning splits by class.  A malformed line of a list is a ValueError naming
    the file and the line.
    """
    root = pathlib.Path(root)
    listed, labelled = root / "images.txt", root / "image_class_labels.txt"
    if listed.is_file() and labelled.is_file():
        rel = _by_image_id(listed, "image_id path")
        cls = _by_image_id(labelled, "image_id class_id")
        unlabelled = sorted(set(rel) - set(cls))
        if unlabelled:
            raise ValueError(f"{labelled}: no class for image id {unlabelled[0]} of {listed} "
                             f"({len(unlabelled)} image(s) without one)")
        ids = sorted(rel)
        paths = [root / "images" / rel[i].strip() for i in ids]
        classes = [cls[i] for i in ids]
    else:
        if not (root / "images").is_dir():
            raise ValueError(f"cub200 at {root}: no images/ folder")
        folders = sorted(d for d in (root / "images").iterdir() if d.is_dir())
        paths, classes = [], []
        for position, folder in enumerate(folders, start=1):
            match = re.match(r"(\d+)\.", folder.name)
            number = int(match.group(1)) if match else position
            images = sorted(p for p in folder.iterdir() if _is_image(p))
            paths += images
            classes += [number] * len(images)
        if not paths:
            raise ValueError(f"cub200 at {root}: no images under {root / 'images'}/<class folder>/")
    return _split_by_class(root, "cub200", paths, classes, lambda c: c <= train_classes)


def _mat_annotations(path: pathlib.Path, fields: tuple) -> list:
    """The ``fields`` of the ``annotations`` struct array of a MATLAB file, as Python lists."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True)
    except Exception as err:  # scipy raises ValueError, MatReadError, IndexError ... for a bad file
        raise ValueError(f"{path}: cannot read it as a MATLAB file ({err})") from err
    if "annotations" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path} has no 'annotations' struct (found {found})")
    ann = np.atleast_1d(mat["annotations"])
    missing = [f for f in fields if f not in (ann.dtype.names or ())]
    if missing:
        raise ValueError(f"{path}: the annotations lack the field(s) {missing}; "
                         f"found {ann.dtype.names}")
    if ann.size == 0:
        raise ValueError(f"{path}: the annotations list no images")
    return [np.atleast_1d(ann[f]).tolist() for f in fields]


def _class_ids(values: list, path: pathlib.Path) -> list:
    """The ``class`` field of a MATLAB annotations file as integers; a ValueError naming the file
    for a value that is not one (a string, an array, 3.5)."""
    ids = []
    for v in values:
        if not (isinstance(v, (int, np.integer))
                or isinstance(v, (float, np.floating)) and float(v).is_integer()):
            raise ValueError(f"{path}: the annotations' class field must hold integer class ids; "
                             f"got {v!r}")
        ids.append(int(v))
    return ids


def _find(root: pathlib.Path, name: str):
    """``root/name`` or ``root/devkit/name``, whichever exists (else None)."""
    for path in (root / name, root / "devkit" / name):
        if path.is_file():
            return path
    return None


def read_cars196(root, *, train_classes: int = 98) -> ImageSplits:
    """Cars196: classes ``1..train_classes`` train, the rest test.

    Reads ``cars_annos.mat`` (all 16,185 images under ``car_ims/``) if present; otherwise the
    ``cars_train/`` + ``cars_test/`` layout, with ``cars_train_annos.mat`` and
    ``cars_test_annos_withlabels.mat`` in the folder or its ``devkit/``. The official image-level
    train/test flag is ignored: metric learning splits by class.
    """
    root = pathlib.Path(root)
    if (root / "cars_annos.mat").is_file():
        rel, classes = _mat_annotations(root / "cars_annos.mat", ("relative_im_path", "class"))
        paths = [root / str(r) for r in rel]
        classes = _class_ids(classes, root / "cars_annos.mat")
    else:
        train_mat = _find(root, "cars_train_annos.mat")
        test_mat = _find(root, "cars_test_annos_withlabels.mat")
        if train_mat is None or test_mat is None:
            raise ValueError(f"cars196 at {root}: found neither cars_annos.mat nor both "
                             "cars_train_annos.mat and cars_test_annos_withlabels.mat (in the "
                             "folder or devkit/); the devkit's cars_test_annos.mat has no labels")
        paths, classes = [], []
        for folder, mat in (("cars_train", train_mat), ("cars_test", test_mat)):
            names, cls = _mat_annotations(mat, ("fname", "class"))
            paths += [root / folder / str(n) for n in names]
            classes += _class_ids(cls, mat)
    return _split_by_class(root, "cars196", paths, classes, lambda c: c <= train_classes)


def _read_ebay(root: pathlib.Path, name: str) -> tuple[list, list]:
    if not (root / name).is_file():
        raise ValueError(f"sop at {root}: no {name}")
    lines = _text(root / name).splitlines()
    header = lines[0].split() if lines else []
    if header[:2] != ["image_id", "class_id"] or "path" not in header:
        raise ValueError(f"{root / name}: expected the header "
                         f"'image_id class_id super_class_id path'; got {lines[:1]}")
    rows = [row for _, row in _rows(root / name)]
    return [root / r["path"] for r in rows], [r["class_id"] for r in rows]


def read_sop(root) -> ImageSplits:
    """Stanford Online Products: the images and classes of ``Ebay_train.txt`` train, those of
    ``Ebay_test.txt`` test."""
    root = pathlib.Path(root)
    tr_paths, tr_cls = _read_ebay(root, "Ebay_train.txt")
    te_paths, te_cls = _read_ebay(root, "Ebay_test.txt")
    return ImageSplits("sop", root, tr_paths, _remap(tr_cls), te_paths, _remap(te_cls))


#: Layout name -> (reader, what identifies it: the line of the error message of detect_layout).
LAYOUTS = {
    "cub200": (read_cub200, "CUB-200-2011: images/ of NNN.Class_name/ folders (or images.txt)"),
    "cars196": (read_cars196, "Cars196: cars_annos.mat, or cars_train/ + cars_train_annos.mat"),
    "sop": (read_sop, "Stanford Online Products: Ebay_train.txt and Ebay_test.txt"),
}


def _looks_like(root: pathlib.Path) -> str | None:
    if (root / "Ebay_train.txt").is_file() and (root / "Ebay_test.txt").is_file():
        return "sop"
    if (root / "cars_annos.mat").is_file():
        return "cars196"
    if (root / "cars_train").is_dir() and _find(root, "cars_train_annos.mat"):
        return "cars196"
    images = root / "images"
    if images.is_dir() and ((root / "images.txt").is_file() or any(
            d.is_dir() and re.match(r"\d+\.", d.name) for d in images.iterdir())):
        return "cub200"
    return None


def detect_layout(root) -> str:
    """Which standard layout ``root`` holds: ``"cub200"``, ``"cars196"`` or ``"sop"``.

    Raises a ValueError that lists what was looked for when the folder is none of them.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise ValueError(f"no such folder: {root}")
    layout = _looks_like(root)
    if layout is not None:
        return layout
    looked = "\n".join(f"  - {desc}" for _, desc in LAYOUTS.values())
    hint = ""
    nested = [d for d in sorted(root.iterdir()) if d.is_dir() and _looks_like(d)]
    if nested:
        hint = (f"\nThe subfolder {nested[0]} looks like {_looks_like(nested[0])}: "
                "pass that folder instead.")
    raise ValueError(f"cannot tell which dataset {root} holds; looked for\n{looked}{hint}")


def read_splits(root, layout: str | None = None) -> ImageSplits:
    """The train and test split of the dataset at ``root`` (layout detected unless given)."""
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    if not pathlib.Path(root).is_dir():
        raise ValueError(f"no such folder: {root}")
    return LAYOUTS[layout][0](root)


class UnreadableImageError(ValueError):
    """An image file that PIL cannot read (corrupt, truncated, not an image); the message names it."""


def _open_rgb(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # decodes now, so that a truncated file fails here
    # PIL's plugins report a broken file as OSError, SyntaxError or ValueError.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = "PIL cannot identify it" if isinstance(err, UnidentifiedImageError) else str(err)
        raise UnreadableImageError(f"cannot read the image {path} ({reason}); replace the file "
                                   "or remove it from the dataset") from err


class ImageDataset(torch.utils.data.Dataset):
    """Images as normalised float tensors ``(3, size, size)``, with their integer labels.

    Each image is converted to RGB, its shorter side resized to ``resize`` (default
    ``size * 256 / 224``, the usual 256 for 224), then cropped to ``size`` x ``size``: at the
    centre for evaluation, at a random place and randomly mirrored for training (``train=True``).
    Random draws use torch's generator, which the DataLoader seeds per worker.
    """

    def __init__(self, paths, labels, *, size: int = 224, resize: int | None = None,
                 train: bool = False):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths, self.labels = list(paths), torch.as_tensor(labels, dtype=torch.long)
        self.size = int(size)
        if resize is None:
            resize = max(self.size, round(self.size * 256 / 224))
        self.resize = int(resize)
        if self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be >= size ({self.size})")
        self.train = train
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, path):
        """One image as a ``(3, size, size)`` float tensor, ImageNet-normalised; an
        :class:`UnreadableImageError` naming the file when PIL cannot read it."""
        from PIL import Image

        img = _open_rgb(path)
        w, h = img.size
        scale = self.resize / min(w, h)
        w, h = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        img = img.resize((w, h), Image.Resampling.BILINEAR)
        if self.train:
            left = int(torch.randint(0, w - self.size + 1, ()))
            top = int(torch.randint(0, h - self.size + 1, ()))
        else:
            left, top = (w - self.size) // 2, (h - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        if self.train and bool(torch.rand(()) < 0.5):
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
        return (x - self.mean) / self.std

    def __getitem__(self, i):
        return self.load(self.paths[i]), self.labels[i]
