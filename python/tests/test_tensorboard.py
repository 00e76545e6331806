"""TensorBoard event files written by `pstl pretrain` and `pstl eval`, read back with the
real `tensorboard` package (EventAccumulator): the same scalars at the same steps as
metrics.csv, across a resume after a run that logged past its checkpoint."""

import csv
import glob

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from conftest import TINY, run_pstl, sets

COLUMNS = ["loss", "loss_matm", "loss_csm", "on_diag", "off_diag", "lr", "samples_per_s"]


def accumulator(path):
    ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run stopped after one epoch, an orphan row past its checkpoint (as a
    killed run leaves), a resume to the end, and a linear probe."""
    d = tmp_path_factory.mktemp("tb")
    run_pstl("synth", "--out", d / "s.h5", "--classes", "3", "--train-per-class", "6",
             "--test-per-class", "2")
    cfg = TINY + [f'data.path="{d / "s.h5"}"', f'run.dir="{d / "runs"}"', 'run.name="tiny"',
                  "pretrain.epochs=3", "pretrain.log_every=1", "pretrain.checkpoint_every=1"]
    cfg = [c for c in cfg if not c.startswith("pretrain.epochs=1")]
    run_dir = d / "runs" / "tiny"
    run_pstl("pretrain", "--stop-after", "1", *sets(cfg))
    first = read_csv(run_dir / "metrics.csv")
    last_step = int(first[-1]["step"])
    # What a run killed after its checkpoint leaves: one more row in both files.
    orphan = dict(first[-1], step=str(last_step + 1), loss="999.0")
    with open(run_dir / "metrics.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(orphan)).writerow(orphan)
    (event_file,) = glob.glob(str(run_dir / "events.out.tfevents.*"))
    value = summary_pb2.Summary.Value(tag="pretrain/loss", simple_value=999.0)
    event = event_pb2.Event(wall_time=0.0, step=last_step + 1,
                            summary=summary_pb2.Summary(value=[value]))
    with open(event_file, "ab") as f:
        RecordWriter(f).write(event.SerializeToString())
    run_pstl("pretrain", *sets(cfg))
    run_pstl("eval", "linear", "--checkpoint", run_dir / "encoder.safetensors",
             *sets(cfg + ["eval.linear_epochs=3"]))
    return {"dir": run_dir, "first_rows": len(first)}


def test_pretrain_scalars_equal_metrics_csv_across_a_resume(run):
    rows = read_csv(run["dir"] / "metrics.csv")
    assert len(rows) > run["first_rows"], "the resumed run logged no rows"
    assert all(float(r["loss"]) != 999.0 for r in rows)
    ea = accumulator(run["dir"])
    for col in COLUMNS:
        events = ea.Scalars(f"pretrain/{col}")
        assert [e.step for e in events] == [int(r["step"]) for r in rows], col
        want = np.array([float(r[col]) for r in rows], dtype=np.float32)
        got = np.array([e.value for e in events], dtype=np.float32)
        np.testing.assert_array_equal(got, want, err_msg=col)


def test_one_event_file_per_process_start(run):
    files = sorted(glob.glob(str(run["dir"] / "events.out.tfevents.*")))
    assert len(files) == 2, files


def test_run_config_is_text(run):
    ea = accumulator(run["dir"])
    assert "config" in ea.Tags()["tensors"]
    texts = [e.tensor_proto.string_val[0].decode() for e in ea.Tensors("config")]
    assert len(texts) == 2
    assert all("[pretrain]" in t and "epochs = 3" in t for t in texts)


def test_eval_curves_equal_the_epochs_csv(run):
    out = run["dir"] / "eval-linear"
    rows = read_csv(out / "linear_epochs.csv")
    assert len(rows) == 3
    ea = accumulator(out)
    for col in ["train_loss", "test_top1", "test_top5", "lr"]:
        events = ea.Scalars(f"linear/{col}")
        assert [e.step for e in events] == [int(r["epoch"]) for r in rows]
        want = np.array([float(r[col]) for r in rows], dtype=np.float32)
        np.testing.assert_array_equal(np.array([e.value for e in events], np.float32), want)
