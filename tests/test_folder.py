"""dataset=folder: any folder of images, held in memory or streamed from disk; and the Inception metrics."""

import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gan_cli import data as datasets
from gan_cli.cli.train import train
from gan_cli.config import UserError
from gan_cli.data import base
from gan_cli.data import folder as folder_module
from gan_cli.evaluation import evaluate, inception, metrics

from .conftest import FAST, run_cli


@pytest.fixture(autouse=True)
def _threads():
    """A streamed run on the CPU gives its workers cores of their own (torch.set_num_threads): restored after."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def write_folder(root, n=24, gray=False, layout="classes", size=(40, 36), corrupt=0, seed=0):
    """A folder of images made on the fly: png and jpg, of another size than the training resolution."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        where = root / (f"class{i % 2}" if layout == "classes" else "")
        where.mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((size[0] + i % 3, size[1]) + (() if gray else (3,))) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(where / f"{i}.{'png' if i % 2 else 'jpg'}")
    for j in range(corrupt):
        (root / f"broken{j}.png").write_bytes(b"\x89PNG but not really")
    (root / "README.txt").write_text("not an image")
    return root


def folder_cfg(make_cfg, root, *extra):
    return make_cfg("dataset=folder", f"dataset.root={root}", "dataset.resolution=16", "dataset.workers=0", *extra)


@pytest.mark.parametrize("layout", ["classes", "flat"])
def test_a_folder_in_memory_has_the_resolution_and_the_detected_channels(make_cfg, tmp_path, layout):
    rgb = write_folder(tmp_path / "rgb", layout=layout)
    gray = write_folder(tmp_path / "gray", gray=True, layout=layout)
    x = datasets.load(folder_cfg(make_cfg, rgb).dataset, torch.device("cpu"))
    assert x.train.shape == (24, 3, 16, 16) and x.shape == (3, 16, 16) and x.is_image and x.stream is None
    assert 0 <= float(x.train.min()) and float(x.train.max()) <= 1 and float(x.train.std()) > 0.02
    g = datasets.load(folder_cfg(make_cfg, gray).dataset, torch.device("cpu"))
    assert g.shape == (1, 16, 16)
    forced = datasets.load(folder_cfg(make_cfg, gray, "dataset.channels=3").dataset, torch.device("cpu"))
    assert forced.shape == (3, 16, 16)
    # the pixels are the file's: its centered square, resized
    first = sorted(p for p in rgb.rglob("*") if p.suffix in (".png", ".jpg"))[0]
    expected = folder_module.read_image(str(first), 3, 16).float() / 255
    assert any(torch.equal(expected, img) for img in x.train)


def test_corrupt_files_are_skipped_and_counted_and_nothing_readable_is_one_line(make_cfg, tmp_path, caplog):
    root = write_folder(tmp_path / "some", corrupt=2)
    with caplog.at_level(logging.WARNING, logger="gan_cli"):
        x = datasets.load(folder_cfg(make_cfg, root).dataset, torch.device("cpu"))
    assert len(x.train) == 24
    assert "skipped 2 of 26 image files that cannot be read (e.g. " in caplog.text
    bad = tmp_path / "bad"
    bad.mkdir()
    for j in range(3):
        (bad / f"{j}.jpg").write_bytes(b"garbage")
    with pytest.raises(UserError, match="none of its 3 image files can be read"):
        datasets.load(folder_cfg(make_cfg, bad).dataset, torch.device("cpu"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no image files"):
        datasets.load(folder_cfg(make_cfg, empty).dataset, torch.device("cpu"))


def test_a_file_whose_body_is_broken_is_skipped_in_memory_and_replaced_when_streaming(make_cfg, tmp_path, caplog):
    root = write_folder(tmp_path / "imgs", n=6, layout="flat")
    good = (root / "1.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])  # a valid header, a cut body
    with caplog.at_level(logging.WARNING, logger="gan_cli"):
        x = datasets.load(folder_cfg(make_cfg, root).dataset, torch.device("cpu"))
    assert len(x.train) == 6 and "skipped 1 of 7" in caplog.text and "truncated.png" in caplog.text
    streamed = datasets.load(folder_cfg(make_cfg, root, "dataset.in_memory=false").dataset, torch.device("cpu"))
    with pytest.warns(UserWarning, match="skipped .*truncated.png, which does not decode"):
        batches = [streamed.sample(7) for _ in range(6)]
    assert all(b.shape == (7, 3, 16, 16) for b in batches)


def test_a_streamed_folder_draws_uniform_minibatches_of_the_files(make_cfg, tmp_path):
    root = write_folder(tmp_path / "imgs", n=10, layout="flat")
    cfg = folder_cfg(make_cfg, root)
    whole = datasets.load(cfg.dataset, torch.device("cpu")).train
    streamed = datasets.load(folder_cfg(make_cfg, root, "dataset.in_memory=false").dataset, torch.device("cpu"))
    assert streamed.train is None and streamed.stream is not None and streamed.is_image
    torch.manual_seed(0)
    batches = torch.cat([streamed.sample(50) for _ in range(20)])  # 1,000 draws with replacement
    assert batches.shape == (1000, 3, 16, 16)
    hits = torch.stack([(batches == img).flatten(1).all(1) for img in whole]).sum(1)
    assert int(hits.sum()) == 1000  # every drawn image is one of the folder's
    assert int(hits.min()) > 50 and int(hits.max()) < 150  # each about 100 times (uniform)
    # the reference images of the evaluation: a fixed choice, the same pixels as in memory
    ref = streamed.reference(4)
    assert torch.equal(ref, streamed.reference(4))
    assert all(any(torch.equal(r, img) for img in whole) for r in ref)


def test_in_memory_auto_streams_what_does_not_fit(make_cfg, tmp_path, monkeypatch):
    root = write_folder(tmp_path / "imgs", n=8, layout="flat")
    monkeypatch.setattr(base, "free_memory", lambda device: 4 * 8 * 3 * 16 * 16 * 4)  # exactly a quarter
    assert datasets.load(folder_cfg(make_cfg, root).dataset, torch.device("cpu")).stream is None
    monkeypatch.setattr(base, "free_memory", lambda device: 4 * 8 * 3 * 16 * 16 * 4 - 1)
    assert datasets.load(folder_cfg(make_cfg, root).dataset, torch.device("cpu")).stream is not None
    assert datasets.load(folder_cfg(make_cfg, root, "dataset.in_memory=true").dataset,
                         torch.device("cpu")).stream is None


@pytest.mark.parametrize("extra", [("dataset.in_memory=true",), ("dataset.in_memory=false", "dataset.workers=1"),
                                   ("dataset.in_memory=false", "arch=mlp", "arch.g_output_bias_from_data=true")])
def test_gan_train_on_a_folder_held_or_streamed(make_cfg, tmp_path, extra):
    root = write_folder(tmp_path / "imgs", n=12)
    cfg = folder_cfg(make_cfg, root, *FAST, "arch=dcgan", "arch.g_hidden=8", "arch.d_hidden=8", *extra)
    out = train(cfg, tmp_path / "run")
    assert out["status"] == "ok" and out["g_updates"] == 4 and math.isfinite(out["game/loss_D"])
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("args,message", [
    (["dataset.root=/no/such/folder"], "dataset.root=/no/such/folder is not a folder"),
    (["dataset.in_memory=maybe"],
     "dataset.in_memory=maybe is not allowed: dataset.in_memory must be one of: auto, true, false"),
    (["dataset.channels=2"], "dataset.channels=2 is not allowed"),
    (["eval.inception_weights=/no/such.pth"], "eval.inception_weights=/no/such.pth: no such file"),
])
def test_folder_mistakes_are_one_line(tmp_path, args, message):
    root = write_folder(tmp_path / "imgs", n=4)
    given = [f"dataset.root={root}"] if not any(a.startswith("dataset.root") for a in args) else []
    result = run_cli(["dataset=folder", *given, *args, "steps=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_inception_weights_are_refused_on_a_set_that_is_not_rgb(make_cfg, tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    with pytest.raises(UserError, match="eval.inception_weights is for RGB image sets \\(cifar10, folder\\)"):
        evaluate.check(make_cfg(f"eval.inception_weights={weights}"))
    pytest.importorskip("torch_fidelity")
    root = write_folder(tmp_path / "imgs", n=4)
    with pytest.raises(UserError, match="w.pth does not hold the FID Inception's weights"):  # before any training
        evaluate.check(folder_cfg(make_cfg, root, f"eval.inception_weights={weights}"))


class StandIn(torch.nn.Module):
    """A small network in the Inception's place: uint8 (N, 3, H, W) -> (N, 8)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3)

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.shape[1] == 3  # what the real network reads
        return self.conv(x.float() / 255).mean((2, 3))


def test_inception_fid_and_kid_run_through_torchmetrics_with_a_stand_in_network(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("torch_fidelity")
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"stand-in")
    loaded = []
    monkeypatch.setattr(inception, "network", lambda path: loaded.append(path) or StandIn())
    inception.load.cache_clear()
    root = write_folder(tmp_path / "imgs", n=40)
    cfg = folder_cfg(make_cfg, root, *FAST, "arch=dcgan", "arch.g_hidden=8", "arch.d_hidden=8", "eval_every=2",
                     f"eval.inception_weights={weights}", "eval.n_samples=60")
    out = train(cfg, tmp_path / "run")
    assert loaded == [str(weights)]  # loaded once; the real images' features kept between evaluations
    assert out["eval/inception_fid"] > 0 and math.isfinite(out["eval/inception_kid"])
    assert out["eval/inception_samples"] == 60 and (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    # the same figure from gan-cli's own Frechet distance on the stand-in's features of the same images
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    real = data.reference(60)
    measure = inception.InceptionMetrics(StandIn(), real, torch.device("cpu"))
    fake = torch.rand(60, 3, 16, 16)
    ours = measure.compare(fake)
    expected = metrics.frechet_distance(measure.features(real), measure.features(fake))
    assert ours["eval/inception_fid"] == pytest.approx(float(expected), rel=1e-6)
    assert ours["eval/inception_fid"] == pytest.approx(measure.compare(fake)["eval/inception_fid"], rel=1e-12)
    gray = inception.as_uint8_rgb(torch.full((2, 1, 4, 4), 0.5))
    assert gray.shape == (2, 3, 4, 4) and int(gray[0, 2, 0, 0]) == 128


def test_the_real_inception_network_loads_from_a_local_file(tmp_path, monkeypatch):
    """torch-fidelity's FID Inception, with weights from a file (random ones here: the real file is
    downloaded by the user beforehand), reads uint8 images of any size and gives 2048 features."""
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    with monkeypatch.context() as m:  # build the architecture without its weights, to write a weights file
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        random_net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(random_net.state_dict(), tmp_path / inception.WEIGHTS)
    net = inception.network(str(tmp_path / inception.WEIGHTS))
    feats = net(inception.as_uint8_rgb(torch.rand(2, 1, 16, 16)))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    (tmp_path / "other.pth").write_bytes(b"not a state dict")
    with pytest.raises(UserError, match="other.pth does not hold the FID Inception's weights"):
        inception.network(str(tmp_path / "other.pth"))


def test_a_streamed_cpu_run_leaves_the_workers_their_cores_unless_omp_num_threads_is_set(make_cfg, tmp_path,
                                                                                         monkeypatch):
    root = write_folder(tmp_path / "imgs", n=4)
    monkeypatch.setattr(folder_module.os, "cpu_count", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = folder_cfg(make_cfg, root, "dataset.in_memory=false", "dataset.workers=1").dataset
    datasets.load(cfg, torch.device("cpu"))
    assert torch.get_num_threads() == 3
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    datasets.load(cfg, torch.device("cpu"))
    assert torch.get_num_threads() == 2


def _fuzz_folder():
    import importlib.util
    import sys

    from .conftest import REPO
    spec = importlib.util.spec_from_file_location("gan_fuzz_folder", REPO / "scripts" / "fuzz_folder.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gan_fuzz_folder"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("channels", [1, 3])
def test_every_png_depth_reads_as_its_level(tmp_path, channels):
    """A 16-bit PNG used to read as white (samples clipped at 255): each colour type and depth reads as its level."""
    fz = _fuzz_folder()
    for color_type, depths in fz.DEPTHS.items():
        for depth in depths:
            value = (2 ** depth - 1) // 3
            path = tmp_path / f"{color_type}-{depth}.png"
            path.write_bytes(fz.png(5, 9, depth, color_type, value))
            x = folder_module.read_image(str(path), channels, 8)
            assert x.shape == (channels, 8, 8)
            assert (x.float() / 255 - value / (2 ** depth - 1)).abs().max() <= 1 / 255, (color_type, depth)


def test_a_long_thin_image_costs_its_own_pixels(tmp_path, monkeypatch):
    """A 1 x 600,000 PNG used to be scaled up whole before the crop (4 GB at resolution 28): the centered square is
    cut from the source first, so nothing larger than the result is ever made."""
    path = tmp_path / "thin.png"
    path.write_bytes(_fuzz_folder().png(1, 600_000, 8, 0, 200))
    made = []
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda im, size, *a, **k: made.append(size) or resize(im, size, *a, **k))
    x = folder_module.read_image(str(path), 1, 28)
    assert made == [(28, 28)] and torch.all(x == 200)


def test_a_streamed_folder_whose_files_stop_decoding_is_one_line(make_cfg, tmp_path, monkeypatch):
    """Files that stop decoding mid-run (moved, unmounted, truncated) used to end in a RuntimeError traceback with no
    metrics.json: now one line naming the folder, and metrics.json says failed."""
    import json

    root = write_folder(tmp_path / "imgs", n=6)
    cfg = folder_cfg(make_cfg, root, *FAST, "arch=dcgan", "arch.g_hidden=8", "arch.d_hidden=8",
                     "dataset.in_memory=false", "eval_every=100", "sample_every=100")
    read = folder_module.read_image
    calls = {"n": 0}

    def failing_later(*args):
        calls["n"] += 1
        if calls["n"] > 16:  # the first minibatches read; then the disk goes away
            raise OSError("unmounted")
        return read(*args)

    monkeypatch.setattr(folder_module, "read_image", failing_later)
    with pytest.raises(UserError) as err, pytest.warns(UserWarning, match="which does not decode") as warned:
        train(cfg, tmp_path / "run")
    assert "none of the 6 image files decodes any more" in str(err.value) and "\n" not in str(err.value)
    # each file skipped is named, up to five; the fifth says the rest are not
    named = [str(w.message) for w in warned if "which does not decode" in str(w.message)]
    assert len(named) == 5 and all(str(root) in m for m in named), named
    assert "further files that fail are not named" in named[-1]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_fuzzed_folders_load_or_fail_in_one_line():
    """The folder fuzzer (scripts/fuzz_folder.py), a few derandomised folders: every intact file reads as its colour,
    every folder loads or is refused in one line, nothing else is raised, no file is slow to read."""
    outcomes = _fuzz_folder().run(n=15, seed=0, budget=5.0)
    bad = [line for outcome in ("wrong", "traceback", "slow") for line in outcomes.get(outcome, [])]
    assert not bad, bad
    assert outcomes.get("ok") and outcomes.get("error")
