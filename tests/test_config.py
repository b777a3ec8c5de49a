"""Typed config: coercion, presets, overrides, unknown keys, dict round trip."""

from __future__ import annotations

import json

import pytest

from marlvault import config
from marlvault.errors import ConfigError
from marlvault.online.ippo import Config


def test_scientific_integer_and_tuple_and_bool_coercion():
    cfg = config.load(
        Config,
        "ippo",
        [
            "system.total_timesteps=2e6",
            "arch.num_envs=64",
            "network.actor_hidden=64,32",
            "system.centralised_critic=True",
            "system.lr=1e-3",
            "logger.run_name=null",
        ],
    )
    assert cfg.system.total_timesteps == 2_000_000
    assert isinstance(cfg.system.total_timesteps, int)
    assert cfg.arch.num_envs == 64
    assert cfg.network.actor_hidden == (64, 32)
    assert cfg.system.centralised_critic is True
    assert cfg.system.lr == pytest.approx(1e-3)
    assert cfg.logger.run_name is None


def test_preset_sets_field_defaults_from_yaml():
    cfg = config.load(Config, "ippo")
    assert cfg.system.rollout_length == 128 and cfg.system.ppo_epochs == 4
    assert cfg.system.num_minibatches == 2 and cfg.system.lr == pytest.approx(2.5e-4)
    assert cfg.network.critic_hidden == (128, 128)
    assert isinstance(cfg.system.total_timesteps, int)  # "2e6" in YAML is a string


def test_env_shortcuts():
    cfg = config.load(Config, "ippo", ["env=lbf", "scenario=8x8-2p-2f-coop"])
    assert (cfg.env.env_name, cfg.env.scenario) == ("lbf", "8x8-2p-2f-coop")


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        config.load(Config, "ippo", ["system.rollout_lenght=64"])
    msg = str(err.value)
    assert "system.rollout_lenght" in msg
    assert "system.rollout_length" in msg and "arch.num_envs" in msg


def test_unknown_section_rejected():
    with pytest.raises(ConfigError, match="nosection.x"):
        config.load(Config, None, ["nosection.x=1"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("system.rollout_length=abc", "int"),
        ("system.rollout_length=1.5", "int"),
        ("system.gamma=yes", "float"),
        ("system.decay_lr=maybe", "bool"),
    ],
)
def test_bad_value_names_key_type_and_value(override, expected):
    key, _, value = override.partition("=")
    with pytest.raises(ConfigError) as err:
        config.load(Config, None, [override])
    msg = str(err.value)
    assert key in msg and expected in msg and value in msg


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config.load(Config, None, ["system.rollout_length"])


def test_validation_in_post_init():
    with pytest.raises(ConfigError, match="num_minibatches"):
        config.load(Config, None, ["system.rollout_length=10", "system.num_minibatches=3"])
    with pytest.raises(ConfigError, match="num_envs"):
        config.load(Config, None, ["arch.num_envs=0"])


def test_dict_round_trip_through_json():
    cfg = config.load(Config, "ippo", ["network.actor_hidden=32,32", "record.extras=log_prob,update"])
    data = json.loads(json.dumps(config.to_dict(cfg)))
    assert data["system"]["rollout_length"] == 128
    back = config.from_dict(Config, data)
    assert back == cfg
    assert back.record.extras == ("log_prob", "update")


def test_from_dict_rejects_unknown_key():
    with pytest.raises(ConfigError, match="arch.num_env"):
        config.from_dict(Config, {"arch": {"num_env": 3}})


@pytest.mark.parametrize(
    ("override", "found"),
    [("record.every_k_updates=0", "found 0"), ("arch.num_envs=-1", "found -1"),
     ("system.num_minibatches=3", "found 3"), ("network.actor_hidden=0", "found (0,)")],
)
def test_require_message_names_key_expected_found_and_fix(override, found):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as err:
        config.load(Config, "ippo", [override])
    msg = str(err.value)
    assert msg.startswith(f"{key}: expected ") and found in msg and f"fix: e.g. {key}=" in msg


def test_env_presets_are_valid():
    for name in config.env_presets():
        env_name, _, scenario = name.partition("-")
        cfg = config.load(Config, "ippo", [f"env={env_name}", f"scenario={scenario}"])
        assert cfg.env.scenario == scenario


def test_describe_keys_covers_every_key_with_type_default_and_meaning():
    rows = config.describe_keys(Config)
    assert [r.key for r in rows] == config.valid_keys(Config)
    by_key = {r.key: r for r in rows}
    lr = by_key["system.lr"]
    assert (lr.type, lr.default) == ("float", str(Config().system.lr))
    assert lr.doc.startswith("Adam learning rate")
    assert all(r.doc for r in rows), [r.key for r in rows if not r.doc]
    # a docstring over several lines is joined into one
    assert "updates per jitted call" in by_key["arch.num_evaluation"].doc


# --- rejected values: every one exits 2 with key, expected, found and a fix that differs --------
ONLINE, OFFLINE, RECORD = ["train", "ippo"], ["offline", "train", "bc"], ["record", "ckpt"]
RECURRENT = ["train", "rec-mappo"]
REJECTED = [
    # (command, overrides, key the message names, what it must say it found)
    (ONLINE, ["system.lr=nan"], "system.lr", "nan"),
    (ONLINE, ["system.lr=0"], "system.lr", "0.0"),
    (ONLINE, ["system.gamma=-1"], "system.gamma", "-1.0"),
    (ONLINE, ["system.gae_lambda=1.5"], "system.gae_lambda", "1.5"),
    (ONLINE, ["system.clip_eps=inf"], "system.clip_eps", "inf"),
    (ONLINE, ["system.ent_coef=-0.1"], "system.ent_coef", "-0.1"),
    (ONLINE, ["system.vf_coef=nan"], "system.vf_coef", "nan"),
    (ONLINE, ["system.max_grad_norm=0"], "system.max_grad_norm", "0.0"),
    (ONLINE, ["system.total_timesteps=1e30"], "system.total_timesteps", "found 1000000"),
    (ONLINE, ["system.total_timesteps=1e12", "system.ppo_epochs=1024", "arch.num_envs=1"],
     "system.total_timesteps", "found 1000000000000"),
    (ONLINE, ["arch.num_envs=1e12"], "arch.num_envs", "found 1000000000000"),
    (ONLINE, ["arch.num_envs=1e6", "system.rollout_length=128"], "arch.num_envs", "found 1000000"),
    (ONLINE, ["arch.num_eval_episodes=0"], "arch.num_eval_episodes", "found 0"),
    (ONLINE, ["arch.seed=-1"], "arch.seed", "found -1"),
    (ONLINE, ["system.rollout_length=0"], "system.rollout_length", "found 0"),
    (ONLINE, ["system.ppo_epochs=1e9"], "system.ppo_epochs", "found 1000000000"),
    (ONLINE, ["system.rollout_length=9", "system.num_minibatches=2"], "system.num_minibatches",
     "found 2"),
    (ONLINE, ["network.critic_hidden=1e9"], "network.critic_hidden", "found (1000000000,)"),
    (ONLINE, ["record.path="], "record.path", "found ''"),
    (ONLINE, ["record.start_step=100", "record.stop_step=50"], "record.stop_step", "found 50"),
    (ONLINE, ["record.start_step=-5"], "record.start_step", "found -5"),
    (ONLINE, ["record.every_k_updates=0"], "record.every_k_updates", "found 0"),
    (RECURRENT, ["arch.num_envs=6", "system.num_minibatches=4"], "system.num_minibatches",
     "found 4"),
    (RECURRENT, ["network.rnn_size=0"], "network.rnn_size", "found 0"),
    (RECURRENT, ["network.post_hidden=0"], "network.post_hidden", "found (0,)"),
    (OFFLINE, ["system.lr=nan"], "system.lr", "nan"),
    (OFFLINE, ["system.max_grad_norm=-1"], "system.max_grad_norm", "-1.0"),
    (OFFLINE, ["system.num_updates=1e10"], "system.num_updates", "found 10000000000"),
    (OFFLINE, ["system.batch_size=0"], "system.batch_size", "found 0"),
    (OFFLINE, ["system.recurrent=true", "system.batch_size=1e6"], "system.batch_size",
     "found 1000000"),
    (OFFLINE, ["system.rnn_size=1e7"], "system.rnn_size", "found 10000000"),
    (OFFLINE, ["arch.eval_epsilon=2"], "arch.eval_epsilon", "2.0"),
    (OFFLINE, ["arch.final_eval_episodes=1e12"], "arch.final_eval_episodes", "found 1000000000000"),
    (OFFLINE, ["data.mode=disk"], "data.mode", "found 'disk'"),
    (OFFLINE, ["data.memory_budget_mb=-1"], "data.memory_budget_mb", "found -1"),
    (OFFLINE, ["data.shuffle_windows=0"], "data.shuffle_windows", "found 0"),
    (["offline", "train", "iql-cql"], ["system.gamma=nan"], "system.gamma", "nan"),
    (["offline", "train", "iql-cql"], ["system.tau=0"], "system.tau", "0.0"),
    (["offline", "train", "iql-cql"], ["system.cql_weight=-2"], "system.cql_weight", "-2.0"),
    (["offline", "train", "qmix-cql"], ["system.mixer_embed=0"], "system.mixer_embed", "found 0"),
    (RECORD, ["epsilon=nan"], "epsilon", "nan"),
    (RECORD, ["episodes=0"], "episodes", "found 0"),
    (RECORD, ["num_envs=1e12"], "num_envs", "found 1000000000000"),
    (RECORD, ["num_envs=1024", "chunk_steps=1e5"], "chunk_steps", "found 100000"),
    (RECORD, ["seed=-1"], "seed", "found -1"),
]


@pytest.mark.parametrize(("command", "overrides", "key", "found"), REJECTED,
                         ids=[" ".join(r[1]) for r in REJECTED])
def test_rejected_values_exit_2_with_key_expected_found_and_a_different_fix(command, overrides,
                                                                            key, found):
    from typer.testing import CliRunner

    from marlvault.cli import app

    result = CliRunner().invoke(app, [*command, *overrides])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    message, _, fix = line.removeprefix("error: ").partition("; fix: e.g. ")
    found = found.removeprefix("found ")
    assert message.startswith(f"{key}: expected ") and f", found {found}" in message, line
    rejected = dict(o.partition("=")[::2] for o in overrides)[key]
    suggested = fix.partition(f"{key}=")[2]
    assert fix.startswith(f"{key}=") and suggested and not _same(suggested, rejected), line


def _same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b
