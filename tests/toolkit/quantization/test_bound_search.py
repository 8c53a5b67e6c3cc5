"""The bound search (`--max-output-error`, `--max-accuracy-drop`): it shows its work on stderr, keeps at least one
node in int8, stops within its time budget, and when it fails it exits 4 and writes nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit.errors import InvalidInputError, ToleranceError
from dlkit.quantization import sensitivity
from dlkit.quantization.candidate import Candidates

UNREACHABLE = 1e-9  # no int8 model is this close to the float one


def _error_line(run) -> str:
    lines = run.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: ") and "Traceback" not in run.output
    return lines[-1]


def test_unreachable_bound_exits_4_writes_nothing_and_shows_each_trial(onnx_exports, mnist_npz, tmp_path):
    out = tmp_path / "cnn.int8.onnx"
    run = CliRunner().invoke(cli, ["quantize", str(onnx_exports["cnn"]), "-o", str(out), "--calibration",
                                   str(mnist_npz["cnn", "calib"]), "--max-output-error", str(UNREACHABLE)])
    assert run.exit_code == 4, run.output
    assert not out.exists() and not list(tmp_path.iterdir())  # no file, no temporary left behind
    error = _error_line(run)
    assert "cannot be met with a node left in int8" in error and "1e-09" in error and "best output error" in error
    assert run.stdout == ""
    # CliRunner's stderr is no terminal: the progress lines are there all the same, one per trial
    steps = [line for line in run.stderr.splitlines() if line.startswith("bound search: node ")]
    assert run.stderr.count("bound search: output error") == 1  # the start: the figure and the bound
    assert steps and all("kept in float" in s and "bound 1e-09" in s and " s" in s for s in steps)
    assert steps[0].startswith("bound search: node 1 of ") and "ETA" in steps[0]


def test_search_keeps_one_node_int8_and_meets_a_reachable_bound(onnx_exports, mnist_npz, tmp_path):
    calib = mnist_npz["cnn", "calib"]
    free = dlkit.quantize(onnx_exports["cnn"], tmp_path / "free.onnx", calibration=calib)
    steps = []
    with pytest.raises(ToleranceError, match="cannot be met with a node left in int8"):
        dlkit.quantize(onnx_exports["cnn"], tmp_path / "none.onnx", calibration=calib, max_output_error=UNREACHABLE,
                       search_progress=steps.append)
    assert not (tmp_path / "none.onnx").exists()
    assert steps[0].done == 0 and steps[0].figure == pytest.approx(free.output_error)
    assert [s.done for s in steps] == list(range(len(steps))) and all(s.total == steps[0].total for s in steps)
    assert all(not s.met and s.bound == UNREACHABLE for s in steps)
    # a bound the search can meet: just above the best figure it reached with int8 nodes left
    best = min(s.figure for s in steps[1:])
    assert best < free.output_error, [s.figure for s in steps]
    result = dlkit.quantize(onnx_exports["cnn"], tmp_path / "bound.onnx", calibration=calib,
                            max_output_error=best * 1.001)
    assert result.kept_in_float and result.nodes_quantized >= 1
    assert result.output_error <= best * 1.001
    assert result.kept_in_float[-1].metric_after == pytest.approx(result.output_error)
    sqnr = [k.sqnr_db for k in result.kept_in_float]
    assert sqnr == sorted(sqnr)  # most sensitive (lowest SQNR) first
    assert result.size_after_bytes > free.size_after_bytes


def test_time_budget_stops_the_search(onnx_exports, mnist_npz, tmp_path, monkeypatch):
    """Each trial takes 10 s on a fake clock: with 15 s, a second trial would end past the budget."""
    now = [0.0]
    real = Candidates.keep_in_float

    def slow_trial(self, node, **kwargs):
        now[0] += 10.0
        return real(self, node, **kwargs)

    monkeypatch.setattr(sensitivity, "_now", lambda: now[0])
    monkeypatch.setattr(Candidates, "keep_in_float", slow_trial)
    steps = []
    out = tmp_path / "q.onnx"
    with pytest.raises(ToleranceError, match=r"not met within the time budget of 15 s \(1 of \d+ nodes"):
        dlkit.quantize(onnx_exports["cnn"], out, calibration=mnist_npz["cnn", "calib"], max_output_error=UNREACHABLE,
                       max_seconds=15, search_progress=steps.append)
    assert not out.exists()
    assert [s.done for s in steps] == [0, 1] and steps[1].seconds == 10.0 and steps[1].eta_seconds == 5.0


def test_max_seconds_through_the_cli(onnx_exports, mnist_npz, tmp_path):
    out = tmp_path / "q.onnx"
    args = ["quantize", str(onnx_exports["cnn"]), "-o", str(out), "--calibration", str(mnist_npz["cnn", "calib"])]
    run = CliRunner().invoke(cli, args + ["--max-output-error", str(UNREACHABLE), "--max-seconds", "0.001"])
    assert run.exit_code == 4, run.output
    assert "time budget of 0.001 s" in _error_line(run) and "--max-seconds" in _error_line(run)
    assert not out.exists()
    run = CliRunner().invoke(cli, args + ["--max-seconds", "10"])  # nothing to search: bad input, before any work
    assert run.exit_code == 2 and "--max-output-error" in _error_line(run)


def test_max_seconds_must_be_positive(onnx_exports, tmp_path):
    with pytest.raises(InvalidInputError, match="positive number of seconds"):
        dlkit.quantize(onnx_exports["cnn"], tmp_path / "q.onnx", max_output_error=0.01, max_seconds=0)
