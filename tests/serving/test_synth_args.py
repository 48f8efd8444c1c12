"""`histosynth synth` refuses a count it cannot serve before it contacts any server: the URL below is a port
nobody listens on, so an error that is not about the arguments would be the 'no Triton server' one."""

from __future__ import annotations

import sys

import pytest

from histosynth import defaults
from histosynth.cli import main

pytestmark = pytest.mark.unit


def _synth(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["histosynth", "synth", "--url", "127.0.0.1:9", "--out", "never-written", *args])
    monkeypatch.setenv("COLUMNS", "400")  # one line per message
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args,problem",
    [
        (["--n", "0"], "--n must be >= 1, got 0"),
        (["--n", "-5"], "--n must be >= 1, got -5"),
        (["--n", str(defaults.SYNTH_MAX + 1)], f"--n {defaults.SYNTH_MAX + 1} is more than the {defaults.SYNTH_MAX} images"),
        (["--n", "4", "--batch", "0"], "--batch must be >= 1, got 0"),
        (["--n", "4", "--seed", "-1"], "--seed must be >= 0, got -1"),
    ],
)
def test_bad_counts_fail_before_any_request(capsys, monkeypatch, tmp_path, args, problem):
    monkeypatch.chdir(tmp_path)
    code, err = _synth(capsys, monkeypatch, *args)
    assert code == 2 and f"error: {problem}" in err, err
    assert "no Triton server" not in err and "Traceback" not in err
    assert not (tmp_path / "never-written").exists()


def test_the_maximum_is_overridable(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(defaults.ENV_SYNTH_MAX, "10")
    code, err = _synth(capsys, monkeypatch, "--n", "11")
    assert code == 2 and "--n 11 is more than the 10 images" in err and "fix: split the job" in err and f"{defaults.ENV_SYNTH_MAX}=11" in err
    code, err = _synth(capsys, monkeypatch, "--n", "10")
    assert code == 2 and "no Triton server answers at 127.0.0.1:9" in err  # within the limit: on to the server
    monkeypatch.setenv(defaults.ENV_SYNTH_MAX, "lots")
    code, err = _synth(capsys, monkeypatch, "--n", "4")
    assert code == 2 and "HISTOSYNTH_SYNTH_MAX='lots' is not a positive whole number" in err
