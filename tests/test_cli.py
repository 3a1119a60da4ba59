"""`python -m lossviz.train`: dataset layouts, image loading, backbones and the training CLI, on
tiny generated folders in the CUB-200-2011, Cars196 and Stanford Online Products layouts."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import lossviz as lv
from lossviz import backbones, cli, images

ROOT = pathlib.Path(__file__).resolve().parents[1]
N_PER_CLASS = 6
# Class ids on both sides of each dataset's train/test boundary (CUB 100 | 101, Cars 98 | 99).
CUB_CLASSES = (1, 2, 99, 100, 101, 102, 199, 200)
CARS_CLASSES = (1, 2, 97, 98, 99, 100, 195, 196)
SOP_CLASSES = (1, 2, 3, 4, 11319, 11320, 11321, 11322)  # train, test: ids as in the real files


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _colour(i):
    """A distinct, saturated colour for class number i (0..7)."""
    palette = [(255, 40, 40), (40, 200, 40), (40, 40, 255), (230, 230, 40),
               (230, 40, 230), (40, 230, 230), (250, 150, 30), (120, 60, 200)]
    return np.array(palette[i], dtype=float)


def _write_image(path: pathlib.Path, colour, rng, size=16):
    """The class colour, a per-image brightness shift and per-pixel noise.  The shift is large, so
    that an untrained network ranks badly by brightness (MAP@R about 0.5) and training has to learn
    to look at the hue instead."""
    pixels = colour + rng.uniform(-90, 90) + rng.normal(0, 30, size=(size, size, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def make_cub(root: pathlib.Path, *, lists: bool = False) -> pathlib.Path:
    rng = np.random.default_rng(0)
    rows = []
    for i, c in enumerate(CUB_CLASSES):
        for j in range(N_PER_CLASS):
            rel = f"{c:03d}.Bird_{c}/Bird_{c}_{j:04d}.jpg"
            _write_image(root / "images" / rel, _colour(i), rng)
            rows.append((rel, c))
    if lists:
        numbered = list(enumerate(rows, 1))
        (root / "images.txt").write_text("".join(f"{n} {rel}\n" for n, (rel, _) in numbered))
        labels = "".join(f"{n} {c}\n" for n, (_, c) in numbered)
        (root / "image_class_labels.txt").write_text(labels)
    return root


def _annotations(fields: dict) -> np.ndarray:
    """A 1 x N MATLAB struct array with the given fields (lists of equal length)."""
    names = list(fields)
    rows = list(zip(*fields.values()))
    return np.array(rows, dtype=[(n, "O") for n in names])[None, :]


def make_cars(root: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(1)
    rel, cls = [], []
    for i, c in enumerate(CARS_CLASSES):
        for _ in range(N_PER_CLASS):
            rel.append(f"car_ims/{len(rel) + 1:06d}.jpg")
            cls.append(np.uint8(c))
            _write_image(root / rel[-1], _colour(i), rng)
    test_flag = [np.uint8(n % 2) for n in range(len(rel))]  # metric learning ignores this flag
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": _annotations(
        {"relative_im_path": rel, "class": cls, "test": test_flag})})
    return root


def make_cars_devkit(root: pathlib.Path) -> pathlib.Path:
    """The other Cars196 layout: cars_train/, cars_test/, devkit/cars_train_annos.mat, and the
    labelled test annotations, each folder holding some images of every class."""
    rng = np.random.default_rng(2)
    for folder, mat in (("cars_train", root / "devkit" / "cars_train_annos.mat"),
                        ("cars_test", root / "cars_test_annos_withlabels.mat")):
        names, cls = [], []
        for i, c in enumerate(CARS_CLASSES):
            for _ in range(N_PER_CLASS // 2):
                names.append(f"{len(names) + 1:05d}.jpg")
                cls.append(np.uint8(c))
                _write_image(root / folder / names[-1], _colour(i), rng)
        mat.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(mat, {"annotations": _annotations({"fname": names, "class": cls})})
    return root


def make_sop(root: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(3)
    lines = {"Ebay_train.txt": [], "Ebay_test.txt": []}
    n = 0
    for i, c in enumerate(SOP_CLASSES):
        name = "Ebay_train.txt" if i < 4 else "Ebay_test.txt"
        for j in range(N_PER_CLASS):
            n += 1
            rel = f"thing_final/{c}_{j}.JPG"
            _write_image(root / rel, _colour(i), rng)
            lines[name].append(f"{n} {c} 1 {rel}")
    for name, rows in lines.items():
        (root / name).write_text("image_id class_id super_class_id path\n" + "\n".join(rows) + "\n")
    return root


MAKERS = {"cub200": make_cub, "cars196": make_cars, "cars196_devkit": make_cars_devkit,
          "sop": make_sop}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: make(tmp_path_factory.mktemp(name)) for name, make in MAKERS.items()}


# ---------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_layouts_are_detected_and_split_by_class(folders, name):
    layout = name.removesuffix("_devkit")
    assert images.detect_layout(folders[name]) == layout
    s = images.read_splits(folders[name])
    assert s.layout == layout
    assert len(s.train_paths) == len(s.test_paths) == 4 * N_PER_CLASS
    assert sorted(set(s.train_labels)) == sorted(set(s.test_labels)) == [0, 1, 2, 3]
    assert all(pathlib.Path(p).is_file() for p in s.train_paths + s.test_paths)
    assert not set(s.train_paths) & set(s.test_paths)
    assert "4 classes" in repr(s)


def test_the_class_boundaries_are_those_of_the_literature(folders):
    cub = images.read_cub200(folders["cub200"])
    number = lambda path: pathlib.Path(path).parent.name[:3]
    assert {number(p) for p in cub.train_paths} == {"001", "002", "099", "100"}
    assert {number(p) for p in cub.test_paths} == {"101", "102", "199", "200"}
    # labels follow the class ids: folder 101 -> test label 0, folder 200 -> test label 3
    assert {(number(p), y) for p, y in zip(cub.test_paths, cub.test_labels)} == {
        ("101", 0), ("102", 1), ("199", 2), ("200", 3)}
    cars = images.read_cars196(folders["cars196"])
    # images 1-24 are classes 1, 2, 97, 98 (train); the image-level "test" flag is ignored
    names = [pathlib.Path(p).name for p in cars.train_paths]
    assert names == [f"{n:06d}.jpg" for n in range(1, 25)]
    assert cars.train_labels == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6
    sop = images.read_sop(folders["sop"])
    assert all(pathlib.Path(p).name.startswith(("1_", "2_", "3_", "4_")) for p in sop.train_paths)
    assert all(pathlib.Path(p).name.startswith("1132") or pathlib.Path(p).name.startswith("11319")
               for p in sop.test_paths)


def test_cub_official_lists_give_the_same_split_as_the_folders(tmp_path, folders):
    listed = images.read_cub200(make_cub(tmp_path, lists=True))
    scanned = images.read_cub200(folders["cub200"])
    rel = lambda s, paths: [pathlib.Path(p).relative_to(s.root) for p in paths]
    assert rel(listed, listed.train_paths) == rel(scanned, scanned.train_paths)
    assert listed.test_labels == scanned.test_labels


def test_an_unknown_folder_says_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(ValueError, match="cannot tell") as err:
        images.detect_layout(tmp_path)
    for expected in ("images/", "cars_annos.mat", "Ebay_train.txt"):
        assert expected in str(err.value)
    with pytest.raises(ValueError, match="no such folder"):
        images.detect_layout(tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown layout"):
        images.read_splits(tmp_path, "imagenet")
    for layout, message in [("cub200", "no images/ folder"), ("cars196", "found neither"),
                            ("sop", "no Ebay_train.txt")]:  # a forced layout that is not there
        with pytest.raises(ValueError, match=message):
            images.read_splits(tmp_path, layout)


def test_a_parent_folder_gets_a_hint(tmp_path):
    make_sop(tmp_path / "Stanford_Online_Products")
    with pytest.raises(ValueError, match="Stanford_Online_Products looks like sop"):
        images.detect_layout(tmp_path)


# ---------------------------------------------------------------------------- images and backbones


def test_images_are_resized_cropped_and_normalised(tmp_path):
    # 32 x 16: a red quarter, a green half, a blue quarter; the centre 16 x 16 crop is all green.
    strip = np.zeros((16, 32, 3), np.uint8)
    strip[:, :8] = (255, 0, 0)
    strip[:, 8:24] = (0, 255, 0)
    strip[:, 24:] = (0, 0, 255)
    Image.fromarray(strip).save(tmp_path / "strip.png")
    Image.fromarray(np.full((20, 20), 128, np.uint8), mode="L").save(tmp_path / "grey.png")
    paths = [tmp_path / "strip.png", tmp_path / "grey.png"]
    ds = images.ImageDataset(paths, [3, 5], size=16, resize=16)
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.item() == 3
    mean, std = torch.tensor(images.IMAGENET_MEAN), torch.tensor(images.IMAGENET_STD)
    expected = (torch.tensor([0.0, 1.0, 0.0]) - mean) / std
    assert torch.allclose(x, expected[:, None, None].expand(3, 16, 16), atol=1e-5)
    grey, _ = ds[1]  # greyscale converted to RGB
    grey_expected = ((128 / 255 - mean) / std)[:, None, None].expand(3, 16, 16)
    assert torch.allclose(grey, grey_expected, atol=1e-5)
    assert images.ImageDataset([], [], size=224).resize == 256


def test_training_images_are_randomly_mirrored(tmp_path):
    half = np.zeros((16, 16, 3), np.uint8)
    half[:, :8] = 255
    Image.fromarray(half).save(tmp_path / "half.png")
    ds = images.ImageDataset([tmp_path / "half.png"], [0], size=16, resize=16, train=True)
    plain = images.ImageDataset([tmp_path / "half.png"], [0], size=16, resize=16)[0][0]
    torch.manual_seed(0)
    draws = [ds[0][0] for _ in range(20)]
    flipped = [torch.equal(d, plain.flip(-1)) for d in draws]
    assert all(f or torch.equal(d, plain) for d, f in zip(draws, flipped))
    assert 0 < sum(flipped) < 20


def test_backbones_embed_on_the_unit_sphere_and_resnet18_has_torchvisions_shape():
    net = backbones.embedding_net("tiny", 8)
    z = net(torch.randn(3, 3, 16, 16))
    assert z.shape == (3, 8) and torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    resnet = backbones.ResNet18()
    assert sum(p.numel() for p in resnet.parameters()) == 11_176_512  # torchvision's, without fc
    assert "layer2.0.downsample.1.running_var" in resnet.state_dict()
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.embedding_net("vit", 8)


def test_weights_load_from_a_local_file_and_mismatches_are_reported(tmp_path):
    source = backbones.embedding_net("tiny", 8)
    state = dict(source.trunk.state_dict())
    state["fc.weight"] = torch.zeros(10, 128)      # a classifier the embedding net has no use for
    del state["features.0.weight"]                 # and a tensor the file lacks
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")
    target = backbones.embedding_net("tiny", 8)
    report = backbones.load_weights(target, tmp_path / "w.pth")
    assert report["missing"] == ["features.0.weight"] and report["unexpected"] == ["fc.weight"]
    assert torch.equal(target.trunk.features[1].weight, source.trunk.features[1].weight)
    torch.save(backbones.ResNet18().state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="none of the"):
        backbones.load_weights(target, tmp_path / "resnet.pth")


# ---------------------------------------------------------------------------- the CLI


def _args(data, out, *extra):
    return ["--data", str(data), "--out", str(out), "--backbone", "tiny", "--dim", "16",
            "--image-size", "16", "--p", "4", "--k", "4", "--lr", "3e-3", "--eval-every", "10",
            "--device", "cpu", "--workers", "0", *extra]


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_full_run_writes_checkpoints_and_metrics(folders, tmp_path):
    records = cli.main(_args(folders["cub200"], tmp_path / "run", "--iters", "20", "--loss", "ms",
                             "--preset", "official_code", "--knob", "lam=0.4"))
    lines = _read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert lines == records and [r["iter"] for r in lines] == [0, 10, 20]
    assert lines[0]["train_loss"] is None
    assert all(r["train_loss"] >= 0 for r in lines[1:])  # MS: 0 when nothing is mined
    for r in lines:
        recalls = [r[f"recall_at_{k}"] for k in (1, 2, 4, 8)]
        assert all(0 <= v <= 1 for v in recalls + [r["map_at_r"]]) and recalls == sorted(recalls)
    assert lines[-1]["recall_at_1"] > 0.5  # chance is 5/23; the classes differ in colour
    assert lines[-1]["map_at_r"] > lines[0]["map_at_r"] + 0.1  # learnt, and carried to new classes
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert last["iteration"] == 20 and last["layout"] == "cub200"
    assert last["knobs"] == {**lv.MS_PRESETS["official_code"], "lam": 0.4}
    top = max(r["recall_at_1"] for r in lines)
    assert best["best_recall_at_1"] == best["metrics"]["recall_at_1"] == top
    model = backbones.embedding_net("tiny", 16)
    model.load_state_dict(last["model"])


def test_resume_continues_exactly_where_the_checkpoint_stopped(folders, tmp_path):
    whole = _args(folders["sop"], tmp_path / "whole", "--iters", "20", "--loss", "contrastive")
    cli.main(whole)
    part = _args(folders["sop"], tmp_path / "part", "--loss", "contrastive")
    cli.main(part + ["--iters", "10"])
    records = cli.main(part + ["--iters", "20", "--resume"])
    assert [r["iter"] for r in records] == [20]
    assert [r["iter"] for r in _read_jsonl(tmp_path / "part" / "metrics.jsonl")] == [0, 10, 20]
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert b["iteration"] == 20
    for key, value in a["model"].items():  # same batches, flips and optimiser state: same weights
        assert torch.equal(value, b["model"][key]), key
    assert cli.main(part + ["--iters", "20", "--resume"]) == []  # already there: nothing to do


def test_string_knobs_amp_and_the_devkit_cars_layout(folders, tmp_path):
    records = cli.main(_args(folders["cars196_devkit"], tmp_path / "run", "--iters", "3",
                             "--eval-every", "3", "--loss", "triplet", "--knob", "mining=semihard",
                             "--knob", "margin=0.2", "--amp", "--recall-ks", "1,4"))
    assert [r["iter"] for r in records] == [0, 3] and "recall_at_4" in records[-1]
    assert "recall_at_2" not in records[-1]


@pytest.mark.parametrize("extra, message", [
    (["--loss", "npair"], "invalid choice"),
    (["--knob", "beta40"], "expected name=value"),
    (["--knob", "gamma=2"], "takes alpha, beta, lam, eps, mining, weighting\n"),
    (["--knob", "anchors=1"], "--knob anchors: the ms loss takes"),
    (["--knob", "beta=-1"], "beta must be > 0"),
    (["--loss", "triplet", "--preset", "paper"], "needs --loss ms"),
    (["--p", "5"], "only 4 classes"),
    (["--iters", "0"], "positive integer"),
    (["--resume"], "no checkpoint"),
])
def test_bad_arguments_fail_with_a_clear_message(folders, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(_args(folders["cub200"], tmp_path / "run", "--iters", "2", *extra))
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_folder_or_an_existing_run_fail_with_a_clear_message(folders, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(_args(tmp_path / "absent", tmp_path / "run", "--iters", "2"))
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    with pytest.raises(SystemExit):
        cli.main(_args(folders["cub200"], tmp_path / "run", "--iters", "2"))
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("command, prog", [
    (["-m", "lossviz"], "python -m lossviz"),
    (["-m", "lossviz.cli"], "python -m lossviz.cli"),
    (["-m", "lossviz.train"], "python -m lossviz.train"),
])
def test_every_entry_point_runs_the_command_line(command, prog):
    done = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"usage: {prog}" in done.stdout and "test-set feedback" in done.stdout
    version = subprocess.run([sys.executable, *command, "--version"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
    assert version.returncode == 0 and version.stdout.strip() == f"lossviz {lv.__version__}"


def test_the_console_script_is_installed():
    script = pathlib.Path(sys.executable).with_name("lossviz-train")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"lossviz {lv.__version__}"


def test_every_loss_of_S_and_labels_trains_from_the_command_line(folders, tmp_path):
    from lossviz.train import LOSSES

    assert {"nt_xent", "supcon"} <= set(LOSSES) and set(lv.PAIR_LOSSES) <= set(LOSSES)
    records = cli.main(_args(folders["cub200"], tmp_path / "nt", "--iters", "10", "--loss", "nt_xent",
                             "--knob", "tau=0.2"))
    assert [r["iter"] for r in records] == [0, 10] and records[-1]["train_loss"] > 0
    records = cli.main(_args(folders["cub200"], tmp_path / "sc", "--iters", "10", "--loss", "supcon"))
    assert records[-1]["train_loss"] > 0
