"""One config machinery for GAN and MFT-SNN presets: ``extends:`` chains, presets that list only what differs,
resolved configs pinned to what they were before presets were shortened, and the DVC pairs stage reading the
SNN preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from histosynth import defaults
from histosynth.cli import _register, app
from histosynth.config import GAN, SNN, load_config, preset_chain, resolved_preset
from histosynth.config.base import merge
from histosynth.config.snn import load_snn_config
from histosynth.errors import ConfigError
from histosynth.gan.baselines import preset_path

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
# GA-GAN search presets are the search's own settings, not training presets (tests/search loads them)
PRESETS = sorted(p for p in CONFIGS.rglob("*.yaml") if not p.name.startswith("ga-gan-"))
# every preset's resolved config (defaults + preset) as it was before presets were cut to what differs
PINNED = json.loads((Path(__file__).parent / "presets_resolved.json").read_text())
_register()


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _leaves(mapping: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in mapping.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return out


def _get(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree[key]
    return tree


@pytest.mark.parametrize("name", sorted(PINNED))
def test_every_preset_resolves_as_pinned(name):
    load = load_snn_config if name.startswith("mft-snn") else load_config
    assert load(CONFIGS / name).to_dict() == PINNED[name]
    assert resolved_preset(CONFIGS / name) == PINNED[name]  # what pipelines carry: the same, every setting


def test_the_pin_covers_every_preset():
    assert sorted(p.name for p in PRESETS if p.parent == CONFIGS) == sorted(PINNED)


def test_the_long_samples_preset_is_the_demo_recipe_with_four_times_the_epochs():
    """BENCHMARKS measures dcgan-samples-long as the demo's recipe trained longer: nothing but the budget (and the
    run's name) may differ, or its numbers would describe another model."""
    demo, long = (load_config(CONFIGS / n).to_dict() for n in ("dcgan-samples.yaml", "dcgan-samples-long.yaml"))
    differ = [k for k in _leaves(demo) if _get(demo, k) != _get(long, k)]
    assert sorted(differ) == ["tracking.run_name", "train.epochs"]
    assert _get(long, "train.epochs") == 4 * _get(demo, "train.epochs") and _get(long, "train.max_steps") == 0


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_no_preset_restates_a_default_or_its_base(path):
    """Each key a preset sets changes the value it would get from the defaults and the presets it extends
    (``method`` excepted: it names what the preset is for)."""
    chain = preset_chain(path)
    schema = SNN if resolved_preset(path)["method"] == "mft-snn" else GAN
    inherited = schema.root()
    for _, data in chain[:-1]:
        merge(inherited, data)
    before = inherited.to_dict()
    merge(inherited, chain[-1][1])
    after = inherited.to_dict()
    same = [key for key in _leaves(chain[-1][1]) if key != "method" and _get(after, key) == _get(before, key)]
    assert not same, f"{path.name} restates {same}"


def test_extends_chain_merges_with_later_files_winning(tmp_path):
    _write(tmp_path, "root.yaml", "train:\n  epochs: 7\n  batch_size: 16\nmodel:\n  g_features: 8\n")
    _write(tmp_path, "sub/mid.yaml", "extends: ../root\ntrain:\n  epochs: 9\nloss:\n  name: hinge\n")
    leaf = _write(tmp_path, "leaf.yaml", "extends: sub/mid.yaml\ntrain:\n  batch_size: 4\n")
    cfg = load_config(leaf)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.model.g_features, cfg.loss.name) == (9, 4, 8, "hinge")
    assert [p.name for p, _ in preset_chain(leaf)] == ["root.yaml", "mid.yaml", "leaf.yaml"]
    # overrides come last, over every file of the chain
    cfg = load_config(leaf, ["train.epochs=3", "train.batch_size=2"])
    assert (cfg.train.epochs, cfg.train.batch_size) == (3, 2)
    assert "extends" not in cfg.to_dict() and "extends" not in resolved_preset(leaf)


def test_extends_by_name_finds_the_presets_of_configs(tmp_path):
    """A preset outside configs/ can build on one inside it by name (e.g. a user's variant of a paper preset)."""
    mine = _write(tmp_path, "mine.yaml", "extends: sngan-samples\ntrain:\n  epochs: 5\n")
    cfg = load_config(mine)
    assert (cfg.loss.name, cfg.model.spectral_norm, cfg.model.upsample, cfg.train.epochs) == ("hinge", True, "deconv", 5)
    assert [p for p, _ in preset_chain(mine)][:2] == [CONFIGS / "base" / "paper.yaml", CONFIGS / "base" / "samples.yaml"]


def test_extends_cycle_is_a_clear_error(tmp_path):
    _write(tmp_path, "a.yaml", "extends: b\n")
    _write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle") as e:
        load_config(tmp_path / "a.yaml")
    assert "a.yaml -> " in e.value.problem and "b.yaml" in e.value.problem and "extends" in e.value.hint
    _write(tmp_path, "self.yaml", "extends: self\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "self.yaml")


def test_missing_or_malformed_base_is_a_clear_error(tmp_path):
    leaf = _write(tmp_path, "leaf.yaml", "extends: no-such-preset\n")
    with pytest.raises(ConfigError, match="extends 'no-such-preset', which is not a preset") as e:
        load_config(leaf)
    assert str(tmp_path / "no-such-preset.yaml") in e.value.problem and "configs/" in e.value.hint
    _write(tmp_path, "list.yaml", "extends: [a, b]\n")
    with pytest.raises(ConfigError, match="extends: \\['a', 'b'\\]"):
        load_config(tmp_path / "list.yaml")


def test_a_bad_key_in_a_base_names_the_key_the_valid_ones_and_the_file(tmp_path):
    _write(tmp_path, "base.yaml", "train:\n  epochz: 3\n")
    leaf = _write(tmp_path, "leaf.yaml", "extends: base\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.epochz'") as e:
        load_config(leaf)
    assert str(tmp_path / "base.yaml") in e.value.problem and "epochs" in e.value.hint
    with pytest.raises(ConfigError, match="unknown config key 'extends'"):
        load_config(None, ["extends=base"])


def test_gan_and_snn_share_one_machinery(tmp_path):
    snn = _write(tmp_path, "snn.yaml", "extends: " + str(CONFIGS / "mft-snn-samples.yaml") + "\nstage2:\n  epochs: 2\n")
    cfg = load_snn_config(snn, ["pairs.seed=3"])
    assert (cfg.model.init, cfg.stage2.epochs, cfg.stage2.max_steps, cfg.pairs.seed) == ("hed", 2, 20, 3)
    assert resolved_preset(snn)["stage2"]["epochs"] == 2
    with pytest.raises(ConfigError, match="stage1.epochs must be an integer"):
        load_snn_config(None, ["stage1.epochs=many"])


def test_configs_dir_has_one_source():
    assert defaults.configs_dir() == CONFIGS
    assert preset_path("SN-GAN", "paper") == CONFIGS / "sngan-paper.yaml"


def test_dry_run_prints_the_resolved_preset():
    res = CliRunner().invoke(app, ["train", "-c", str(CONFIGS / "rl-eo-samples.yaml"), "-s", "train.epochs=2", "--dry-run"])
    assert res.exit_code == 0, res.output
    printed = yaml.safe_load(res.output)
    assert printed == {**PINNED["rl-eo-samples.yaml"], "train": {**PINNED["rl-eo-samples.yaml"]["train"], "epochs": 2}}


def test_dvc_pairs_stage_reads_the_snn_preset():
    """dvc.yaml's pairs stage builds data/pairs from the SNN samples preset (what `snn pairs -c` and the rl_eo
    pipeline read), tracks every file of its extends: chain, and restates no pair setting of its own."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["pairs"]
    preset = "configs/mft-snn-samples.yaml"
    assert f"--config {preset}" in stage["cmd"] and "pairs." not in stage["cmd"]
    tracked = {next(iter(p)) for p in stage["params"] if isinstance(p, dict)} | set(stage.get("deps", []))
    chain = [str(p.relative_to(ROOT)) for p, _ in preset_chain(ROOT / preset)]
    assert set(chain) <= tracked
    assert "pairs" not in yaml.safe_load((ROOT / "params.yaml").read_text())
    assert "pairs" in yaml.safe_load((ROOT / preset).read_text())  # the section the stage tracks must exist
