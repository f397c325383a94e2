"""Configs composed of typed parts: the flat names, the parts, composition and one-line errors."""

import pytest
from pydantic import ValidationError

from gradientflow.config import DataSpec, ModelSpec, PropagateConfig, ProbeSpec, TrainConfig, describe_error
from gradientflow.optim import OptimizerSpec
from gradientflow.train import LoopSpec


def test_a_train_config_is_the_union_of_its_parts():
    cfg = TrainConfig(data="xor", depth=3, lr=0.1, optimizer="sgd", epochs=4, probe=True)
    parts = cfg.parts
    assert parts.data == DataSpec(data="xor") and parts.model == ModelSpec(depth=3)
    assert parts.optimizer == OptimizerSpec(optimizer="sgd", lr=0.1) and parts.loop == LoopSpec(epochs=4)
    assert parts.probes == ProbeSpec(probe=True)
    fields = [set(type(p).model_fields) for p in parts]
    assert set().union(*fields) == set(TrainConfig.model_fields) and sum(map(len, fields)) == len(TrainConfig.model_fields)


def test_compose_and_replace_validate_and_keep_the_flat_names():
    cfg = TrainConfig.compose(DataSpec(data="digits", n_train=100), ModelSpec(width=8), LoopSpec(epochs=2), lr=0.01)
    assert (cfg.data, cfg.n_train, cfg.width, cfg.epochs, cfg.lr) == ("digits", 100, 8, 2, 0.01)
    assert TrainConfig(**cfg.model_dump()) == cfg  # a run's config.json reads back as the same config
    assert cfg.replace(lr=0.5).lr == 0.5 and cfg.lr == 0.01
    with pytest.raises(ValidationError):
        cfg.replace(depth=-1)
    with pytest.raises(ValidationError):  # a part's own rule runs in the composition too
        TrainConfig.compose(OptimizerSpec(optimizer="sgd"), momentum=0.9)


def test_every_part_keeps_its_validators_in_the_composition():
    """TrainConfig inherits the parts' validators by name: two parts using one name would silently drop one."""
    def names(model):
        d = model.__pydantic_decorators__
        return [*d.field_validators, *d.model_validators]

    parts = [n for part in (DataSpec, ModelSpec, OptimizerSpec, LoopSpec, ProbeSpec) for n in names(part)]
    assert len(parts) == len(set(parts)) and set(parts) <= set(names(TrainConfig))


@pytest.mark.parametrize("make, line", [
    (lambda: TrainConfig(activation="swishy"), "invalid activation='swishy': unknown activation"),
    (lambda: TrainConfig(schedule="cyclic"), "invalid schedule='cyclic': unknown schedule"),
    (lambda: TrainConfig(lr=float("nan")), "invalid lr=nan: must be a finite number > 0"),
    (lambda: TrainConfig(noise=float("inf")), "invalid noise=inf: must be a finite number >= 0"),
    (lambda: TrainConfig(colour="red"), "unknown field 'colour'"),
    (lambda: TrainConfig(optimizer="rmsprop", momentum=0.5), "momentum applies to momentum, nesterov, adam, adamw"),
    (lambda: OptimizerSpec(optimizer="sgd", eps=1e-8), "eps (delta) applies to adagrad"),
    (lambda: LoopSpec(device="tpu"), "invalid device='tpu': unknown device"),
    (lambda: PropagateConfig(gain=0.0), "invalid gain=0.0"),
])
def test_errors_are_one_line_naming_the_value(make, line):
    with pytest.raises(ValidationError) as err:
        make()
    assert line in describe_error(err.value) and "\n" not in describe_error(err.value)


def test_regressions_found_by_fuzzing(tmp_path):
    from gradientflow.config import load_file

    with pytest.raises(ValidationError, match="weights is too large"):
        ModelSpec(depth=1000, width=100_000)
    (tmp_path / "c.toml").write_text('lr = "\\ud800"\n')
    with pytest.raises(ValueError, match=r"config file '.*c.toml' does not parse: Escaped character"):
        load_file(str(tmp_path / "c.toml"))


def test_sigma_w2_and_sigma_b2_belong_to_the_meanfield_init_only():
    with pytest.raises(ValidationError, match="sigma_w2 is read only by init='meanfield', not init='he'"):
        TrainConfig(sigma_w2=2.0)
    with pytest.raises(ValidationError, match="sigma_w2 and sigma_b2 are read only"):
        PropagateConfig(init="xavier", sigma_w2=2.0, sigma_b2=0.1)
    with pytest.raises(ValidationError):
        TrainConfig(init="meanfield", sigma_w2=0.0)


def test_one_catalog_table_is_what_the_config_the_lab_and_the_cli_offer():
    """``catalog.CHOICES`` is the one list: every name in it is accepted by a run config (and so by a
    sweep cell) and shown by ``train --help``; the lab offers it less files and Maxout; an unknown
    name gets the same one-line refusal everywhere."""
    import re

    from click.testing import CliRunner
    from pydantic import ValidationError

    from gradientflow import catalog
    from gradientflow.cli import main
    from gradientflow.config import TrainConfig
    from gradientflow.lab.session import LabConfig

    shown = CliRunner().invoke(main, ["train", "--help"]).output
    shown = re.sub(r"\s+", " ", re.sub(r"-\n\s*", "-", shown))  # the help may wrap a name after its hyphen (reg-plane)
    for field in catalog.CHOICES:
        for name in catalog.names(field):
            assert name in shown, (field, name)
            if field != "data" or name not in ("mnist1d",):  # mnist1d is made on first use: skip the cost
                TrainConfig(**{field: name})
            if field in ("data", "optimizer", "schedule", "normalize") or (field == "activation" and name != "maxout"):
                LabConfig(**{field: name})
    for field in ("activation", "init", "normalize", "optimizer", "schedule"):
        line = f"unknown {catalog.CHOICES[field][1]}; expected one of: "
        with pytest.raises(ValidationError, match=re.escape(line)):
            TrainConfig(**{field: "nonesuch"})
        with pytest.raises(ValidationError, match=re.escape(line)):
            LabConfig(**{field: "nonesuch"})
