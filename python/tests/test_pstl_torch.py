"""pstl_torch against the real pstl binary: every loader gives `pstl embed`'s features."""

import json
import re
import subprocess
import sys
import zipfile

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import pstl_torch as pt
from conftest import run_pstl

TOL = 1e-4


def feats(enc, x, **kw):
    with torch.no_grad():
        return enc(torch.from_numpy(x), **kw).numpy()


def assert_close(a, b, tol=TOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = float(np.abs(a - b).max())
    assert diff <= tol, f"max abs diff {diff:.3g} > {tol}"


def test_hub_directory_from_pretrained_matches_embed(work):
    d = work["dir"]
    hub = d / "hub"
    assert sorted(p.name for p in hub.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]
    enc = pt.from_pretrained(hub)
    assert not enc.training and enc.classifier is None
    assert_close(feats(enc, work["x"]), np.load(d / "z.npy"))
    cfg = json.loads((hub / "config.json").read_text())
    assert cfg["encoder"]["feature_dim"] == 256 and cfg["frames"] == 50
    assert cfg["persons"] == 2 and cfg["stream"] == "joint" and "num_classes" not in cfg
    card = (hub / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: pstl-torch") and "## Results" in card


def test_hub_keys_are_official(work):
    keys = set(load_file(str(work["dir"] / "hub" / "model.safetensors")))
    official = {f"encoder.{k}" for k in pt.Encoder().state_dict()}
    assert keys == official


def test_safetensors_and_pt_exports_match_embed(work):
    d = work["dir"]
    z = np.load(d / "z.npy")
    for name in ("enc.safetensors", "enc.pt"):
        assert_close(feats(pt.load_encoder(d / name), work["x"]), z)


def test_golden_checkpoint_and_drop_joints_match_embed(work):
    d = work["dir"]
    enc = pt.load_encoder(work["golden"])  # `encoder.` prefix plus projector keys
    assert_close(feats(enc, work["x"], drop_joints=[1, 4, 20]), np.load(d / "z_drop.npy"))


@pytest.mark.parametrize("stream", ["motion", "bone"])
def test_streams_match_embed(work, stream):
    d = work["dir"]
    enc = pt.load_encoder(d / "enc.safetensors")
    x = pt.apply_stream(torch.from_numpy(work["x"]), stream).numpy()
    assert_close(feats(enc, x), np.load(d / f"z_{stream}.npy"))


def test_tiny_run_checkpoint_and_hub_match_embed(work):
    d = work["dir"]
    z = np.load(d / "z_tiny.npy")
    assert z.shape == (5, 32)
    from_ckpt = pt.load_encoder(work["tiny_ckpt"])  # shapes inferred from the weights
    assert from_ckpt.config.base_channels == 4 and from_ckpt.config.feature_dim == 32
    assert_close(feats(from_ckpt, work["x"]), z)
    hub = pt.from_pretrained(d / "tiny_hub")
    assert hub.hub_config["encoder"]["base_channels"] == 4
    assert hub.hub_config["dataset"]["name"] == "synthetic"
    assert_close(feats(hub, work["x"]), z)


def test_barlow_twins_head_has_the_checkpoint_keys(work):
    state = load_file(str(work["golden"]))
    head_state = {k[len("projector."):]: v for k, v in state.items()
                  if k.startswith("projector.")}
    head = pt.BarlowTwinsHead(256, 512)
    head.load_state_dict(head_state, strict=True)
    head.train()
    f1, f2 = state["f1"], state["f2"]
    loss = pt.BarlowTwinsHead.loss(head(f1), head(f2))
    assert abs(loss.item() - state["bt_loss"].item()) <= 1e-4 * max(1.0, state["bt_loss"].item())


def test_renamed_key_is_an_error(work, tmp_path):
    state = load_file(str(work["dir"] / "enc.safetensors"))
    state["data_bn.wieght"] = state.pop("data_bn.weight")  # a renamed key
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises((RuntimeError, KeyError), match="wieght|data_bn.weight"):
        pt.load_encoder(tmp_path / "bad.safetensors")


def test_load_store_numpy_and_dataset(work):
    data = pt.load_store(work["store"])
    assert data["attrs"]["dataset"] == "synthetic"
    train = data["train"]
    assert train["x"].shape == (18, 3, 50, 25, 2) and train["x"].dtype == np.float32
    assert sorted(set(train["y"].tolist())) == [0, 1, 2] and len(train["name"]) == 18
    assert np.isfinite(train["x"]).all() and np.abs(train["x"]).max() > 0
    ds = pt.StoreDataset(work["store"], "test", transform=lambda x: pt.bone(x[None])[0])
    assert len(ds) == 6
    x0, y0 = ds[0]
    ref = pt.bone(torch.from_numpy(data["test"]["x"][:1]))[0]
    assert torch.equal(x0, ref) and y0 == int(data["test"]["y"][0])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 50, 25, 2)


def test_torch_export_program_matches_eager(work):
    enc = pt.load_encoder(work["dir"] / "enc.safetensors")
    prog = pt.export_program(enc)
    x = torch.from_numpy(work["x"])  # batch 5, traced with 2: the batch dim is free
    with torch.no_grad():
        assert_close(prog.module()(x).numpy(), feats(enc, work["x"]))


def test_onnx_export_runs(work, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    import onnx

    enc = pt.load_encoder(work["dir"] / "enc.safetensors")
    path = pt.export_onnx(enc, tmp_path / "enc.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["x"]


def test_example_script_loads_torchscript_and_safetensors(work):
    d = work["dir"]
    script = Path(__file__).resolve().parents[2] / "examples" / "load_exports.py"
    out = subprocess.run([sys.executable, str(script), str(d / "enc_ts.pt"),
                          str(d / "enc.safetensors")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    diff = float(out.stdout.rsplit("max abs diff", 1)[1])
    assert diff <= TOL, out.stdout


def test_hub_with_classifier_matches_torchscript_logits(work):
    d = work["dir"]
    enc = pt.from_pretrained(d / "cls_hub")
    assert enc.hub_config["num_classes"] == 3 and enc.classifier is not None
    card = (d / "cls_hub" / "README.md").read_text()
    assert "Protocol `linear`" in card and "top1_last" in card
    traced = torch.jit.load(str(d / "cls_ts.pt"), map_location="cpu").eval()
    x = torch.from_numpy(work["x"])
    with torch.no_grad():
        logits = enc.classifier(enc(x)).numpy()
        assert_close(logits, traced(x).numpy())


@pytest.mark.parametrize("name,hub", [("enc_ts.pt", "hub"), ("cls_ts.pt", "cls_hub")])
def test_torchscript_export_carries_its_digest_record(work, name, hub):
    """`torch.jit.load(_extra_files=...)` returns pstl's record: an xxh3-64 digest per
    tensor record of the archive (what `pstl verify` recomputes) and, per record, the
    weight whose bytes it holds; the module still gives the hub model's outputs."""
    d = work["dir"]
    path = d / name
    extra = {"pstl_digests.json": ""}
    traced = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
    record = json.loads(extra["pstl_digests.json"])
    assert record["algo"] == "xxh3-64"
    state = {k.removeprefix("encoder."): v
             for k, v in load_file(str(d / hub / "model.safetensors")).items()}
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        top = z.namelist()[0].split("/", 1)[0]
        tensors = sorted(n.split("/", 1)[1] for n in z.namelist()
                         if re.fullmatch(r"[^/]+/(constants|data)/[^/]+", n))
        assert tensors and sorted(record["tensors"]) == tensors
        assert all(re.fullmatch("[0-9a-f]{16}", h) for h in record["tensors"].values())
        for rec, weight in record["names"].items():
            want = state[weight].numpy()
            got = np.frombuffer(z.read(f"{top}/{rec}"), dtype=want.dtype)
            assert np.array_equal(got, want.ravel()), (rec, weight)
    named = set(record["names"].values())
    assert "data_bn.weight" in named and ("fc.weight" in named) == (hub == "cls_hub")
    enc = pt.from_pretrained(d / hub)
    x = torch.from_numpy(work["x"])
    with torch.no_grad():
        want = enc(x) if enc.classifier is None else enc.classifier(enc(x))
        assert_close(traced(x).numpy(), want.numpy())
    out = run_pstl("verify", path)
    assert f"TorchScript module, {len(tensors)} tensor digests verified" in out.stdout


def test_hub_card_shows_the_run_figures(work):
    """`export --hub` copies the run's pictures (here its loss curves) into figures/ and
    shows them in the model card."""
    hub = work["dir"] / "tiny_hub"
    assert (hub / "figures" / "loss.png").read_bytes() == \
        (work["tiny_ckpt"].parent / "loss.png").read_bytes()
    card = (hub / "README.md").read_text()
    assert "## Figures" in card and "(figures/loss.png)" in card
