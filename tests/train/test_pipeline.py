"""The streaming pipeline: batch k is a function of (seed, rank, k) alone, made the same by any
number of workers, paired by the coupling in the loader, resumed exactly, uint8 and on-disk
pools, flips, and its errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_image_runs import TINY_UNET, write_idx

from flowmatch.couplings import Independent, MinibatchOT, SchrodingerBridge
from flowmatch.errors import ConfigError, DataError
from flowmatch.loss import FlowMatchingLoss
from flowmatch.paths import BrownianBridgePath
from flowmatch.train.config import load_config
from flowmatch.train.pipeline import ImageFiles, StreamBatches, batch_seed, take_coupling
from flowmatch.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

GEN = torch.Generator()  # the stream ignores the loop's generator; next() takes one


def pool(n=40, side=6):
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, (n, 1, side, side), dtype=np.uint8))


def take(stream, k):
    out = [stream.next(stream.batch_size, GEN) for _ in range(k)]
    stream.close()
    return out


def same(a, b):
    return all(
        (x is None and y is None) or torch.equal(x, y)
        for pa, pb in zip(a, b, strict=True)
        for x, y in zip(pa, pb, strict=True)
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_do_not_depend_on_the_number_of_workers(workers):
    labels = torch.arange(40) % 3
    ref = take(StreamBatches(pool(), labels, batch_size=8, seed=3, flip=True), 5)
    got = take(StreamBatches(pool(), labels, batch_size=8, seed=3, flip=True, workers=workers), 5)
    assert same(ref, got)


def test_uint8_pixels_are_mapped_to_unit_range_and_labels_follow():
    p, labels = pool(), torch.arange(40)
    x0, x1, cond = take(StreamBatches(p, labels, batch_size=16, seed=0), 1)[0]
    assert x1.dtype == torch.float32 and x0.shape == x1.shape == (16, 1, 6, 6)
    assert torch.equal(x1, p[cond].float() / 127.5 - 1)  # exact: the same float ops
    assert -1 <= x1.min() and x1.max() <= 1


def test_flip_mirrors_some_images_and_leaves_the_rest():
    p, labels = pool(200), torch.arange(200)
    _, x1, cond = take(StreamBatches(p, labels, batch_size=64, seed=1, flip=True), 1)[0]
    plain = p[cond].float() / 127.5 - 1
    mirrored = [torch.equal(x1[i], plain[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(x1[i], plain[i]) for i in range(64)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 15 < sum(mirrored) < 49  # Binomial(64, 1/2): 32 +- 4; outside 15..48 is p < 1e-4


def test_seeds_and_steps_give_other_batches_and_resume_replays():
    s = StreamBatches(pool(), batch_size=8, seed=0)
    first = take(s, 4)
    assert not torch.equal(first[0][1], first[1][1])
    other = take(StreamBatches(pool(), batch_size=8, seed=1), 1)
    assert not torch.equal(other[0][1], first[0][1])
    resumed = StreamBatches(pool(), batch_size=8, seed=0, workers=1)
    resumed.load_state_dict({"stream_step": 2})
    assert same(take(resumed, 2), first[2:])
    assert batch_seed(0, 5, rank=1) != batch_seed(0, 5) != batch_seed(0, 6)


def test_the_loader_pairs_with_the_coupling_as_the_loss_would():
    points = torch.randn(64, 3)
    plain = take(StreamBatches(points, batch_size=32, seed=2), 2)
    coupled = take(StreamBatches(points, batch_size=32, seed=2, coupling=MinibatchOT()), 2)
    for (x0, x1, _), (c0, c1, _) in zip(plain, coupled, strict=True):
        p0, p1, _ = MinibatchOT()(x0, x1)  # exact OT: deterministic, no draws
        assert torch.equal(c0, p0) and torch.equal(c1, p1)
        assert (c0 - c1).pow(2).sum() < (x0 - x1).pow(2).sum()  # OT shortens the pairs


def test_take_coupling_leaves_the_loss_pairing_nothing_but_keeps_its_path():
    loss = FlowMatchingLoss(coupling=SchrodingerBridge(0.5))
    moved = take_coupling(loss)
    assert isinstance(moved, SchrodingerBridge) and isinstance(loss.coupling, Independent)
    assert isinstance(loss.path, BrownianBridgePath)
    assert take_coupling(FlowMatchingLoss()) is None
    assert take_coupling(object()) is None


def test_stream_errors_are_one_line():
    with pytest.raises(DataError, match="flip"):
        StreamBatches(torch.randn(5, 2), batch_size=2, flip=True)
    with pytest.raises(DataError, match="labels"):
        StreamBatches(pool(), torch.arange(3), batch_size=2)
    with pytest.raises(DataError, match="workers"):
        StreamBatches(pool(), batch_size=2, workers=65)
    with pytest.raises(DataError, match="empty"):
        StreamBatches(torch.empty(0, 2), batch_size=2)
    with pytest.raises(DataError, match="batches of 2"):
        StreamBatches(pool(), batch_size=2).next(3, GEN)


def write_pngs(root, n_per_class=12, side=8):
    rng = np.random.default_rng(0)
    for k, name in enumerate(["a", "b"]):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = (rng.integers(0, 60, (side, side)) + 150 * k).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / name / f"{i}.png")


def test_image_files_read_lazily_and_a_file_gone_bad_is_one_line(tmp_path):
    write_pngs(tmp_path / "imgs")
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    images = ImageFiles(files, size=8, channels=1).check()
    assert images.shape == (24, 1, 8, 8) and images.ndim == 4
    x = images[torch.tensor([0, 23])]
    assert x.dtype == torch.uint8 and torch.equal(
        x[0, 0], torch.from_numpy(np.array(Image.open(files[0])))
    )
    stream = StreamBatches(images, batch_size=4, seed=0, workers=1)
    files[3].write_bytes(b"broken")  # after the check: found when a batch reads it
    with pytest.raises(DataError) as err:
        for _ in range(50):
            stream.next(4, GEN)
    assert str(files[3]) in str(err.value) and "\n" not in str(err.value)


def train(out, overrides, steps):
    cfg = load_config(
        None, [*TINY_UNET, f"train.steps={steps}", "train.checkpoint_every=3", *overrides]
    )
    trainer = Trainer(cfg, out, progress=False, final_eval=False, echo=lambda _: None)
    trainer.run()
    return trainer


def weights(trainer):
    return {k: v.clone() for k, v in trainer.flow.state_dict().items()}


def test_idx_run_streams_uint8_with_ot_in_a_worker_and_resumes_bit_identical(tmp_path):
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "img.gz", rng.integers(0, 256, (60, 8, 8)))
    write_idx(tmp_path / "lab.gz", rng.integers(0, 3, (60,)))
    data = [
        f"data.images={tmp_path / 'img.gz'}",
        f"data.labels={tmp_path / 'lab.gz'}",
        "data.name=null",
        "data.workers=1",
        "data.flip=true",
        "coupling.name=minibatch_ot",
    ]
    full = train(tmp_path / "full", data, steps=6)
    assert isinstance(full.batches, StreamBatches) and full.data.train.dtype == torch.uint8
    assert isinstance(full.batches.coupling, MinibatchOT)
    assert isinstance(full.loss.coupling, Independent)
    # the same run stopped after its checkpoint at step 3, resumed with a fresh stream
    train(tmp_path / "part", data, steps=6)
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "step_00000006")
    shutil.rmtree(tmp_path / "part" / "model")
    cfg = load_config(tmp_path / "part" / "config.yaml")
    quiet = {"progress": False, "final_eval": False, "echo": lambda _: None}
    resumed = Trainer(cfg, tmp_path / "part", resume=True, **quiet)
    resumed.run()
    assert resumed.batches.step == 6
    a, b = weights(full), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_image_folder_run_reads_from_disk(tmp_path):
    write_pngs(tmp_path / "imgs")
    t = train(
        tmp_path / "run",
        [
            f"data.images={tmp_path / 'imgs'}",
            "data.image_size=8",
            "data.name=null",
            "eval.num_samples=2",
        ],
        steps=2,
    )
    assert isinstance(t.data.train, ImageFiles) and len(t.data.train) == 20  # 4 held out
    assert t.data.holdout.dtype == torch.float32 and t.data.holdout.shape == (4, 1, 8, 8)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["data.name=moons", "model.name=mlp", "data.flip=true"], "data.flip"),
        (["data.corpus=names", "data.name=null", "data.workers=1"], "data.workers"),
        (["data.name=digits", "data.workers=65"], "data.workers"),
    ],
)
def test_pipeline_config_errors_name_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        cfg = load_config(None, ["train.steps=2", *overrides])
        Trainer(cfg, tmp_path / "run", progress=False, echo=lambda _: None).run()
    assert err.value.key == key, str(err.value)


def test_points_stream_with_workers_trains(tmp_path):
    cfg = load_config(
        None,
        [
            "data.name=moons",
            "data.workers=1",
            "coupling.name=minibatch_ot",
            "train.steps=4",
            "train.batch_size=16",
            "eval.steps=[1]",
            "eval.methods=[euler]",
            "eval.draws=1",
        ],
    )
    t = Trainer(cfg, tmp_path / "run", progress=False, final_eval=False, echo=lambda _: None)
    t.run()
    assert isinstance(t.batches, StreamBatches) and t.batches.step == 4


def test_fm_train_streams_uint8_images_the_same_with_and_without_workers():
    import flowmatch as fm

    x, y = pool(64, 8), torch.arange(64) % 3
    loss = FlowMatchingLoss(coupling=MinibatchOT())

    def run(workers):
        torch.manual_seed(0)
        model = fm.FlowModel(fm.models.UNet(1, 8, base=8, num_classes=3))
        kw = {"labels": y, "steps": 4, "batch_size": 16, "progress": False, "loss": loss}
        return fm.train(model, x, workers=workers, flip=True, **kw).state_dict()

    a, b = run(0), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert isinstance(loss.coupling, MinibatchOT)  # the caller's loss is not changed


def test_fm_train_stream_arguments_are_checked():
    import flowmatch as fm

    model = fm.FlowModel(fm.models.MLP(dim=2))
    with pytest.raises(ValueError, match="workers"):
        fm.train(model, torch.randn(10, 2), steps=1, workers=True)
    dataset = torch.utils.data.TensorDataset(torch.randn(10, 2))
    with pytest.raises(DataError, match="DataLoader"):
        fm.train(model, dataset, steps=1, workers=1)
    with pytest.raises(DataError, match="flip"):
        fm.train(model, torch.randn(10, 2), steps=1, flip=True)
