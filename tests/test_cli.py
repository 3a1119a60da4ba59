"""`python -m lossviz.train`: dataset layouts, image loading, backbones and the training CLI, on
tiny generated folders in the CUB-200-2011, Cars196 and Stanford Online Products layouts."""

import json
import pathlib
import shutil
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


def test_an_unreadable_image_is_a_value_error_naming_it(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[:len(data) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"not an image" * 10)
    ds = images.ImageDataset([tmp_path / n for n in ("whole.png", "truncated.png", "garbage.jpg")],
                             [0, 1, 2], size=16)
    assert ds[0][0].shape == (3, 16, 16)
    with pytest.raises(images.UnreadableImageError) as err:
        ds[1]
    assert str(err.value) == (f"cannot read the image {tmp_path / 'truncated.png'} (image file is "
                              "truncated); replace the file or remove it from the dataset")
    with pytest.raises(ValueError, match="garbage.jpg \\(PIL cannot identify it\\)"):
        ds[2]


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
    (tmp_path / "cut.pth").write_bytes((tmp_path / "w.pth").read_bytes()[:200])       # a truncated download
    with pytest.raises(ValueError, match=r"cut\.pth: cannot read it as a state dict"):
        backbones.load_weights(target, tmp_path / "cut.pth")


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


# ---------------------------------------------------------------------------- the CLI on bad input


def _error(argv, capsys) -> str:
    """Run the CLI, which must stop with one line and no traceback: a usage error (exit 2, the
    usage and then ``prog: error: ...``) or ``SystemExit("error: ...")``.  The message."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if exit_.value.code == 2:
        lines = [line for line in err.splitlines() if ": error: " in line]
        assert len(lines) == 1 and err.endswith(lines[0] + "\n"), err
        return lines[0].split(": error: ", 1)[1]
    assert isinstance(exit_.value.code, str) and exit_.value.code.startswith("error: ")
    assert "\n" not in exit_.value.code, exit_.value.code
    return exit_.value.code.removeprefix("error: ")


@pytest.mark.parametrize("name", ["last.pt", "best.pt", "metrics.jsonl"])
def test_a_fresh_run_refuses_a_folder_that_holds_a_run(folders, tmp_path, capsys, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(b"earlier results")
    assert _error(_args(folders["cub200"], out, "--iters", "2"), capsys) == (
        f"{out} already holds a run ({name}); pass --resume to continue it or --overwrite to "
        "start afresh")
    assert [p.name for p in out.iterdir()] == [name]
    assert (out / name).read_bytes() == b"earlier results"


def test_overwrite_starts_afresh(folders, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"earlier results")
    (out / "metrics.jsonl").write_text('{"iter": 50}\n')
    cli.main(_args(folders["cub200"], out, "--iters", "2", "--overwrite"))
    assert [r["iter"] for r in _read_jsonl(out / "metrics.jsonl")] == [0, 2]
    assert torch.load(out / "best.pt", weights_only=True)["iteration"] in (0, 2)


def test_resuming_an_older_checkpoint_never_overwrites_a_later_run(folders, tmp_path, capsys):
    out, old = tmp_path / "run", tmp_path / "old.pt"
    run = _args(folders["sop"], out, "--loss", "contrastive")
    cli.main(run + ["--iters", "10"])
    shutil.copy(out / "last.pt", old)
    cli.main(run + ["--iters", "20", "--resume"])
    shutil.copy(out / "last.pt", out / "best.pt")  # a best.pt of the later run, whatever its R@1
    later = {name: (out / name).read_bytes() for name in ("last.pt", "best.pt", "metrics.jsonl")}
    refused = (f"--resume: {old} is at iteration 10, but {{}} is at iteration 20: resuming would "
               "overwrite that run; pass another --out, or --overwrite to discard what follows "
               "iteration 10")
    assert _error(run + ["--iters", "30", "--resume", str(old)], capsys) == refused.format(
        out / "last.pt")
    assert {name: (out / name).read_bytes() for name in later} == later
    only_metrics = tmp_path / "only_metrics"  # the records alone say how far the run went
    only_metrics.mkdir()
    shutil.copy(out / "metrics.jsonl", only_metrics)
    argv = _args(folders["sop"], only_metrics, "--loss", "contrastive", "--iters", "30", "--resume", str(old))
    assert _error(argv, capsys) == refused.format(only_metrics / "metrics.jsonl")
    (only_metrics / "metrics.jsonl").unlink()
    (only_metrics / "best.pt").write_bytes(b"")  # how far did that run go?
    assert _error(argv, capsys) == (f"--resume: {only_metrics / 'best.pt'} is unreadable, so how "
                                    f"far the run in {only_metrics} went is unknown; pass "
                                    "--overwrite to discard it")
    (only_metrics / "best.pt").unlink()
    (only_metrics / "metrics.jsonl").write_text('{"iter": 0}\n{"iter": 1')  # torn by a crash
    assert _error(argv, capsys) == (f"{only_metrics / 'metrics.jsonl'}, line 2: not a record of "
                                    "lossviz-train; delete the line, or pass --overwrite to drop it")

    # --overwrite abandons the later run: its files, its records after iteration 10 (and lines
    # that are no records)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"iter": 2')
    records = cli.main(run + ["--iters", "20", "--resume", str(old), "--overwrite"])
    assert (f"--overwrite: discarded last.pt, best.pt, 2 line(s) of metrics.jsonl of {out} "
            "(after iteration 10)") in capsys.readouterr().err
    assert [r["iter"] for r in records] == [20]
    lines = _read_jsonl(out / "metrics.jsonl")
    assert lines[:2] == _read_jsonl_text(later["metrics.jsonl"])[:2]
    assert [r["iter"] for r in lines] == [0, 10, 20] and lines[2] == records[0]
    assert torch.load(out / "last.pt", weights_only=True)["metrics"] == records[0]
    # best.pt of the later run is gone; there is one again once R@1 beats the checkpoint's best
    beaten = records[0]["recall_at_1"] > torch.load(old, weights_only=True)["best_recall_at_1"]
    assert (out / "best.pt").exists() == beaten
    if beaten:
        assert torch.load(out / "best.pt", weights_only=True)["metrics"] == records[0]


def _read_jsonl_text(data: bytes):
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.fixture(scope="module")
def checkpoint(folders, tmp_path_factory):
    """A real last.pt (tiny backbone, dim 16, one iteration) to corrupt."""
    out = tmp_path_factory.mktemp("ckpt")
    cli.main(_args(folders["cub200"], out, "--iters", "1", "--eval-every", "1"))
    return out / "last.pt"


def _truncated(ckpt, path):
    data = ckpt.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _without_optimizer(ckpt, path):
    state = torch.load(ckpt, weights_only=True)
    del state["optimizer"]
    torch.save(state, path)


def _smaller_model(ckpt, path):
    state = torch.load(ckpt, weights_only=True)
    state["model"] = backbones.embedding_net("tiny", 8).state_dict()  # the args still say dim 16
    torch.save(state, path)


def _other_optimizer(ckpt, path):
    state = torch.load(ckpt, weights_only=True)
    state["optimizer"] = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1).state_dict()
    torch.save(state, path)


UNREADABLE = "{}: cannot read it as a checkpoint (truncated, corrupt, or not written by torch.save)"


@pytest.mark.parametrize("write, message", [
    (_truncated, UNREADABLE),
    (lambda ckpt, path: path.write_bytes(b""), UNREADABLE),
    (lambda ckpt, path: path.write_bytes(b"not a checkpoint" * 20), UNREADABLE),
    (lambda ckpt, path: torch.save(torch.nn.Linear(2, 2), path), UNREADABLE),  # a pickled module
    (lambda ckpt, path: torch.save(backbones.embedding_net("tiny", 16).state_dict(), path),
     "{}: not a checkpoint of lossviz-train (it lacks model, optimizer, iteration, args, "
     "best_recall_at_1, rng)"),
    (lambda ckpt, path: torch.save([1, 2], path), "{}: not a checkpoint of lossviz-train (it lacks "
     "model, optimizer, iteration, args, best_recall_at_1, rng)"),
    (_without_optimizer, "{}: not a checkpoint of lossviz-train (it lacks optimizer)"),
    (_smaller_model, "--resume: {} holds another model than --backbone tiny --dim 16 (2 tensor(s) "
     "differ, such as embed.weight)"),
    (_other_optimizer, "--resume: {} holds an optimiser state that does not fit the model (not "
     "Adam's, or of other parameters)"),
], ids=["truncated", "empty", "garbage", "pickled-module", "state-dict", "list", "no-optimizer",
        "other-model", "other-optimizer"])
def test_a_bad_resume_file_ends_in_one_line_naming_it(folders, checkpoint, tmp_path, capsys,
                                                      write, message):
    path = tmp_path / "bad.pt"
    write(checkpoint, path)
    argv = _args(folders["cub200"], tmp_path / "run", "--iters", "5", "--resume", str(path))
    assert _error(argv, capsys) == message.format(path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("split, workers", [("test", "0"), ("train", "0"), ("train", "1")])
def test_a_corrupt_image_ends_in_one_line_naming_it(tmp_path, capsys, split, workers):
    root = make_cub(tmp_path / "cub")
    s = images.read_cub200(root)
    # the test split is read whole at iteration 0; every batch holds train class 0 (4 of 4 classes)
    bad = s.test_paths[:1] if split == "test" else [
        p for p, y in zip(s.train_paths, s.train_labels) if y == 0]
    for path in bad:
        path.write_bytes(b"not an image" * 10)
    message = _error(_args(root, tmp_path / "run", "--iters", "2", "--workers", workers), capsys)
    assert message in {f"cannot read the image {path} (PIL cannot identify it); replace the file "
                       "or remove it from the dataset" for path in bad}


def _edit_line(name, number, text):
    """A function that replaces line ``number`` (from 1) of ``root/name`` with ``text`` (None:
    removes it)."""
    def edit(root):
        lines = (root / name).read_text().splitlines()
        lines[number - 1:number] = [] if text is None else [text]
        (root / name).write_text("\n".join(lines) + "\n")
    return edit


def _write(name, data: bytes):
    return lambda root: (root / name).write_bytes(data)


def _annotations_mat(name, fields):
    return lambda root: scipy.io.savemat(root / name, {"annotations": _annotations(fields)})


@pytest.mark.parametrize("make, edit, message", [
    (lambda r: make_cub(r, lists=True), _edit_line("images.txt", 5, "5"),
     "{root}/images.txt, line 5: expected 'image_id path'; got '5'"),
    (lambda r: make_cub(r, lists=True), _edit_line("images.txt", 3, "three 001.Bird_1/x.jpg"),
     "{root}/images.txt, line 3: expected 'image_id path'; got 'three 001.Bird_1/x.jpg'"),
    (lambda r: make_cub(r, lists=True), _edit_line("images.txt", 6, "5 001.Bird_1/x.jpg"),
     "{root}/images.txt, line 6: image id 5 appears twice"),
    (lambda r: make_cub(r, lists=True), _write("images.txt", b"1 \xff\xfe.jpg\n"),
     "{root}/images.txt: not a text file (byte 2 is not UTF-8)"),
    (lambda r: make_cub(r, lists=True), _write("images.txt", b"\n"),
     "{root}/images.txt lists no images"),
    (lambda r: make_cub(r, lists=True), _edit_line("image_class_labels.txt", 2, "2 one"),
     "{root}/image_class_labels.txt, line 2: expected 'image_id class_id'; got '2 one'"),
    (lambda r: make_cub(r, lists=True), _edit_line("image_class_labels.txt", 4, None),
     "{root}/image_class_labels.txt: no class for image id 4 of {root}/images.txt (1 image(s) "
     "without one)"),
    (make_sop, _edit_line("Ebay_train.txt", 3, "2 two 1 thing_final/1_1.JPG"),
     "{root}/Ebay_train.txt, line 3: expected 'image_id class_id super_class_id path'; "
     "got '2 two 1 thing_final/1_1.JPG'"),
    (make_sop, _edit_line("Ebay_test.txt", 2, "25 11319"),
     "{root}/Ebay_test.txt, line 2: expected 'image_id class_id super_class_id path'; "
     "got '25 11319'"),
    (make_sop, _write("Ebay_test.txt", b"image_id class_id super_class_id path\n"),
     "{root}/Ebay_test.txt lists no images"),
    (make_cars, _write("cars_annos.mat", b"not a MATLAB file" * 20),
     "{root}/cars_annos.mat: cannot read it as a MATLAB file (Unknown mat file type, "
     "version 32, 77)"),
    (make_cars, _annotations_mat("cars_annos.mat", {"fname": ["a.jpg"], "class": [1]}),
     "{root}/cars_annos.mat: the annotations lack the field(s) ['relative_im_path']; "
     "found ('fname', 'class')"),
    (make_cars, _annotations_mat("cars_annos.mat", {"relative_im_path": ["car_ims/000001.jpg"],
                                                     "class": ["one"]}),
     "{root}/cars_annos.mat: the annotations' class field must hold integer class ids; "
     "got 'one'"),
    (make_cars_devkit, _annotations_mat("devkit/cars_train_annos.mat",
                                        {"relative_im_path": ["00001.jpg"], "class": [1]}),
     "{root}/devkit/cars_train_annos.mat: the annotations lack the field(s) ['fname']; "
     "found ('relative_im_path', 'class')"),
    (make_cars_devkit, _annotations_mat("cars_test_annos_withlabels.mat",
                                        {"fname": ["00001.jpg"], "class": [2.5]}),
     "{root}/cars_test_annos_withlabels.mat: the annotations' class field must hold integer "
     "class ids; got 2.5"),
], ids=["cub-short-line", "cub-bad-id", "cub-repeated-id", "cub-not-utf8", "cub-empty",
        "cub-bad-class", "cub-unlabelled", "sop-bad-class", "sop-short-row", "sop-empty",
        "cars-not-mat", "cars-wrong-fields", "cars-string-class", "devkit-wrong-fields",
        "devkit-fractional-class"])
def test_a_malformed_list_file_ends_in_one_line_naming_it(tmp_path, capsys, make, edit, message):
    root = make(tmp_path / "data")
    edit(root)
    argv = _args(root, tmp_path / "run", "--iters", "2")
    assert _error(argv, capsys) == message.format(root=root)


def test_cub_train_test_split_txt_is_not_read(tmp_path):
    root = make_cub(tmp_path, lists=True)
    (root / "train_test_split.txt").write_text("garbage\n1\n")
    assert len(images.read_splits(root).test_paths) == 4 * N_PER_CLASS


def test_a_test_split_without_a_class_of_two_images_ends_in_one_line(tmp_path, capsys):
    root = make_sop(tmp_path / "sop")
    rows = (root / "Ebay_test.txt").read_text().splitlines()
    unique = [" ".join([r.split()[0], str(20000 + n), *r.split()[2:]]) for n, r in enumerate(rows[1:])]
    (root / "Ebay_test.txt").write_text("\n".join(rows[:1] + unique) + "\n")
    assert images.read_sop(root).test_classes == 4 * N_PER_CLASS  # one image each
    assert _error(_args(root, tmp_path / "run", "--iters", "2"), capsys) == (
        f"sop at {root}: no test class has two images, so Recall@K and MAP@R are undefined (a "
        "query needs an image of its class to find)")
