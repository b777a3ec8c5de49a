"""Benchmark dataset suites in one command: ``marlvault dataset build ENV SCENARIO --out DIR``.

A suite is what OG-MARL publishes per task: Good / Medium / Poor datasets made by rolling out
policies of different quality, with a page of statistics. Building one has four stages; each is
written to ``DIR/suite.json`` when it finishes, so a build that is stopped (Ctrl-C, SIGKILL, a
full disk) is continued by running the same command again, and finished levels are verified, not
rebuilt:

1. **train** the online system into ``DIR/training`` with ``logger.keep_checkpoints=true`` (a
   checkpoint per evaluation), or take the checkpoints of ``--from-run RUN_DIR``. An interrupted
   training is started again from scratch.
2. **select**: every kept checkpoint, and the uniform random policy, is scored by the mean team
   return of ``eval_episodes`` episodes rolled out exactly as the recording will be (``mode``,
   ``epsilon``; the same seed for every candidate). With ``R`` the random policy's score and
   ``B`` the best checkpoint's, level ``L`` takes the checkpoint whose score is nearest to
   ``R + f_L (B - R)`` (:data:`LEVELS`: good 1, medium 0.5, poor 0.1), best levels first and each
   checkpoint at most once; ``random`` is the uniform random policy itself.
3. **record** each level: ``episodes`` complete episodes with :func:`record_policy` (the code of
   ``marlvault record``) into a staging vault, exported with the ``og-marl`` layout (one row, no
   padding, every episode ending on its flag) to ``DIR/<source>/<env>/<scenario>.vlt/<Level>``,
   the path OG-MARL's loaders build.
4. **card**: ``DIR/README.md`` with the levels' statistics, coverage, sources and stage times,
   and ``DIR/returns.png`` with the return histogram and violins of all levels.

:func:`build_suite` is the library entry point; the CLI is ``marlvault/cli/dataset.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marlvault.errors import CheckpointError, ConfigError, DatasetError, VaultExistsError

LEVELS: dict[str, float] = {"good": 1.0, "medium": 0.5, "poor": 0.1, "random": 0.0}
"""Level name -> target fraction of the best checkpoint's gain over the random policy."""
SYSTEMS = ("ippo", "mappo", "rec-ippo", "rec-mappo")
MANIFEST = "suite.json"
FORMAT = "marlvault-suite/1"
TRAINING = "training"
RANDOM = "random"
_STAGING = ".staging"
_RESERVED = ("env", "scenario", "env.", "record.", "logger.base_dir", "logger.run_name",
             "logger.checkpoint", "logger.keep_checkpoints", "arch.seed")  # fmt: skip


@dataclass(frozen=True)
class SuiteConfig:
    """What ``marlvault dataset build`` was asked for (also the resume key in ``suite.json``)."""

    env: str
    scenario: str
    out: str
    system: str = "ippo"
    levels: tuple[str, ...] = ("good", "medium", "poor")
    episodes: int = 1000
    """Complete episodes per level."""
    from_run: str | None = None
    """Reuse this run's ``checkpoints/step_*`` instead of training."""
    eval_episodes: int = 64
    """Episodes that score each candidate policy."""
    mode: str = "sampled"
    """Recording and scoring behaviour: ``sampled`` from the policy or ``greedy``."""
    epsilon: float = 0.0
    """Probability of a uniformly random action at each step (recording and scoring)."""
    seed: int = 0
    """Seed of training, scoring and recording."""
    source: str = "marlvault"
    """First folder of OG-MARL's layout ``<source>/<env>/<scenario>.vlt/<Level>``."""
    layout: str = "og-marl"
    """``og-marl`` (one row of complete episodes, no padding) or ``rows`` (as recorded: one row
    per parallel environment)."""
    overrides: tuple[str, ...] = ()
    """``KEY=VALUE`` training overrides (``marlvault train <system> --help``)."""

    def __post_init__(self) -> None:
        bad = [lv for lv in self.levels if lv not in LEVELS]
        if bad or not self.levels or len(set(self.levels)) != len(self.levels):
            raise ConfigError(
                f"--levels: expected distinct names among {', '.join(LEVELS)}, found "
                f"{','.join(self.levels) or 'nothing'}; fix: e.g. --levels good,medium,poor")
        if self.system not in SYSTEMS:
            raise ConfigError(f"--system: expected one of {', '.join(SYSTEMS)}, found "
                              f"{self.system!r}; fix: --system ippo")
        if self.layout not in ("og-marl", "rows"):
            raise ConfigError(f"--layout: expected og-marl or rows, found {self.layout!r}; fix: "
                              "--layout og-marl (what OG-MARL's code reads)")
        if self.mode not in ("sampled", "greedy"):
            raise ConfigError(f"--mode: expected sampled or greedy, found {self.mode!r}")
        for name, ok, want, fix in (("episodes", self.episodes >= 1, ">= 1", "1000"),
                                    ("eval-episodes", self.eval_episodes >= 1, ">= 1", "64"),
                                    ("epsilon", 0.0 <= self.epsilon <= 1.0, "in [0, 1]", "0"),
                                    ("seed", self.seed >= 0, ">= 0", "0")):  # fmt: skip
            if not ok:
                found = getattr(self, name.replace("-", "_"))
                raise ConfigError(f"--{name}: expected {want}, found {found}; fix: --{name} {fix}")
        for item in self.overrides:
            key = item.partition("=")[0]
            if any(key == r or (r.endswith(".") and key.startswith(r)) for r in _RESERVED):
                raise ConfigError(
                    f"training override {item!r}: {key} is set by dataset build itself (env and "
                    "scenario are arguments, --seed sets the seed, checkpoints go to "
                    "OUT/training); fix: drop it")
        if self.from_run and self.overrides:
            raise ConfigError("training overrides have no effect with --from-run (nothing is "
                              "trained); fix: drop them or drop --from-run")

    @property
    def root(self) -> Path:
        return Path(self.out)

    def level_path(self, level: str) -> Path:
        """``OUT/<source>/<env>/<scenario>.vlt/<Level>``: the vault of ``level``."""
        return self.root / self.source / self.env / f"{self.scenario}.vlt" / level.capitalize()

    def command(self) -> str:
        """The shell command that builds (or continues) this suite."""
        parts = ["marlvault dataset build", self.env, self.scenario, "--out", self.out,
                 "--system", self.system, "--levels", ",".join(self.levels),
                 "--episodes", str(self.episodes), "--eval-episodes", str(self.eval_episodes),
                 "--mode", self.mode, "--epsilon", f"{self.epsilon:g}", "--seed", str(self.seed),
                 "--source", self.source, "--layout", self.layout]  # fmt: skip
        if self.from_run:
            parts += ["--from-run", self.from_run]
        return " ".join([*parts, *self.overrides])

    def key(self) -> dict[str, Any]:
        """The options a continued build must share with the first (``out`` excluded)."""
        d = dataclasses.asdict(self)
        d.pop("out")
        return json.loads(json.dumps(d))


@dataclass
class Candidate:
    """A policy that may become a level: a kept checkpoint, or the random policy."""

    tag: str  # checkpoint folder name, or "random"
    path: str  # checkpoint folder ("" for random)
    step: int  # training step of the checkpoint (-1 for random)
    score: float = math.nan  # mean team return over eval_episodes
    score_std: float = math.nan


@dataclass
class SuiteResult:
    """What a build produced (also ``suite.json``)."""

    config: SuiteConfig
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("levels", {})


# --- the manifest: one JSON file, replaced atomically after every stage ---------------------------
def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False))
    os.replace(tmp, root / MANIFEST)


def open_manifest(cfg: SuiteConfig) -> dict[str, Any]:
    """The manifest of ``cfg.out``: a new one for an empty or missing folder, the stored one when
    the folder is a suite built with the same options.

    Raises:
        VaultExistsError: the folder holds something else (nothing is touched).
        ConfigError: the folder is a suite built with other options.
    """
    root = cfg.root
    if root.exists() and not root.is_dir():
        raise VaultExistsError(f"--out {root}: expected a folder, found a file; nothing was "
                               "changed; fix: pass a new --out folder")
    path = root / MANIFEST
    if not path.is_file():
        others = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        if others:
            raise VaultExistsError(
                f"--out {root}: expected an empty folder or a suite of `marlvault dataset build` "
                f"(with {MANIFEST}), found {len(others)} other entries ({', '.join(others[:3])}); "
                "nothing was changed; fix: pass a new --out folder")
        root.mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, "config": cfg.key(), "command": cfg.command(),
                    "stages": {}, "levels": {}}  # fmt: skip
        _write_manifest(root, manifest)
        return manifest
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err}); fix: pass a new --out folder") from None
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: expected format {FORMAT!r}, found {manifest.get('format')!r}; "
                           "fix: pass a new --out folder")
    stored, asked = manifest.get("config", {}), cfg.key()
    diff = [k for k in asked if stored.get(k) != asked[k]]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"--out {root}: this suite was built with {k}={stored.get(k)!r}, this command asks "
            f"for {k}={asked[k]!r}; nothing was changed; fix: repeat the first command to "
            f"continue it ({manifest.get('command')}), or pass a new --out folder")
    return manifest


# --- stage 1: training --------------------------------------------------------------------------
def _train(cfg: SuiteConfig, log: Callable[[str], None]) -> Path:
    """Trains the online system into ``OUT/training``; returns the run folder."""
    from marlvault import config
    from marlvault.online import ippo, rec_ippo
    from marlvault.online import run as online_run

    recurrent = cfg.system.startswith("rec-")
    extra = ["system.centralised_critic=true"] if cfg.system.endswith("mappo") else []
    ours = [f"env={cfg.env}", f"scenario={cfg.scenario}", f"arch.seed={cfg.seed}",
            f"logger.base_dir={cfg.root}", f"logger.run_name={TRAINING}",
            "logger.checkpoint=true", "logger.keep_checkpoints=true"]  # fmt: skip
    run_cfg = config.load(rec_ippo.Config if recurrent else ippo.Config,
                          "rec_ippo" if recurrent else "ippo", [*extra, *cfg.overrides, *ours])
    shutil.rmtree(cfg.root / TRAINING, ignore_errors=True)  # an unfinished training restarts
    log(f"[train] {cfg.system} on {cfg.env}/{cfg.scenario}, "
        f"{run_cfg.system.total_timesteps:,} steps -> {cfg.root / TRAINING}")
    result = online_run.train(run_cfg)
    if result.interrupted:
        raise KeyboardInterrupt
    return result.run_dir


def candidates(run_dir: Path) -> list[Candidate]:
    """The kept checkpoints of a run (``checkpoints/step_*``), by step."""
    from marlvault.checkpoint import read_meta

    folder = Path(run_dir) / "checkpoints"
    found = []
    for path in sorted(folder.glob("step_*")) if folder.is_dir() else []:
        meta = read_meta(path)
        found.append(Candidate(path.name, str(path), int(meta.get("step", -1))))
    return found


def _check_run(cfg: SuiteConfig, run_dir: Path, found: list[Candidate]) -> None:
    """The run's checkpoints fit the asked suite (task, system, enough of them)."""
    from marlvault.checkpoint import load_policy
    from marlvault.online.run import algorithm_name

    need = sum(lv != RANDOM for lv in cfg.levels)
    if len(found) < need:
        raise CheckpointError(
            f"{run_dir}/checkpoints: expected at least {need} kept checkpoints (step_*) for levels "
            f"{','.join(cfg.levels)}, found {len(found)}; fix: train with "
            "logger.keep_checkpoints=true and arch.num_evaluation >= the number of levels, or "
            "drop --from-run to let dataset build train")
    run_cfg, _ = load_policy(found[0].path)
    got = (run_cfg.env.env_name, run_cfg.env.scenario, algorithm_name(run_cfg))
    if got != (cfg.env, cfg.scenario, cfg.system):
        raise ConfigError(
            f"--from-run {run_dir}: expected a {cfg.system} run on {cfg.env}/{cfg.scenario}, found "
            f"{got[2]} on {got[0]}/{got[1]}; fix: pass ENV SCENARIO --system as the run was trained")


# --- stage 2: selection -------------------------------------------------------------------------
def choose_levels(levels: Sequence[str], found: Sequence[Candidate], random_score: float
                  ) -> dict[str, Candidate]:
    """Level -> candidate by the rule of the module docstring (pure; scores already set).

    Raises:
        DatasetError: no checkpoint scores above the random policy, or too few checkpoints.
    """
    if not found:
        raise DatasetError("no kept checkpoints to choose levels from; fix: train with "
                           "logger.keep_checkpoints=true")
    best = max(c.score for c in found)
    gap = best - random_score
    if not gap > 0:
        raise DatasetError(
            f"the best checkpoint scores {best:.4g}, not above the random policy's "
            f"{random_score:.4g}, so levels of quality cannot be told apart; fix: train longer "
            "(e.g. a larger system.total_timesteps)")
    chosen: dict[str, Candidate] = {}
    free = list(found)
    for level in sorted(levels, key=lambda lv: -LEVELS[lv]):
        if level == RANDOM:
            chosen[level] = Candidate(RANDOM, "", -1, random_score)
            continue
        if not free:
            raise DatasetError(f"level {level}: no checkpoint left (each serves one level); fix: "
                               "keep more checkpoints (a larger arch.num_evaluation)")
        target = random_score + LEVELS[level] * gap
        pick = min(free, key=lambda c: (abs(c.score - target), c.step))
        free.remove(pick)
        chosen[level] = pick
    return {lv: chosen[lv] for lv in levels}


def _score_all(cfg: SuiteConfig, found: list[Candidate], log: Callable[[str], None]
               ) -> float:
    """Scores every candidate in place (one compiled rollout for all); returns the random
    policy's score."""
    import jax

    from marlvault.checkpoint import load_policy
    from marlvault.envs.registry import make_env
    from marlvault.envs.vec import VecEnv
    from marlvault.record.rollout import RolloutConfig, make_actor, make_chunk_fn, rollout_returns

    run_cfg, params = load_policy(found[0].path)
    env = make_env(cfg.env, cfg.scenario)
    rollout = RolloutConfig(checkpoint=found[0].path, episodes=cfg.eval_episodes, mode=cfg.mode,
                            epsilon=cfg.epsilon, seed=cfg.seed)  # fmt: skip
    vec = VecEnv(env, rollout.rows)
    actor = make_actor(run_cfg, env.spec, params)
    chunk = make_chunk_fn(vec, actor, rollout)
    key = jax.random.PRNGKey(cfg.seed)
    for c in found:
        _, p = load_policy(c.path)
        returns = rollout_returns(chunk, vec, actor, make_actor(run_cfg, env.spec, p).params,
                                  cfg.eval_episodes, key)  # fmt: skip
        c.score, c.score_std = float(returns.mean()), float(returns.std())
        log(f"[select] {c.tag} (step {c.step:,}): {c.score:.4g} ± {c.score_std:.3g}")
    random_chunk = make_chunk_fn(vec, actor, dataclasses.replace(rollout, epsilon=1.0))
    returns = rollout_returns(random_chunk, vec, actor, actor.params, cfg.eval_episodes, key)
    log(f"[select] uniform random policy: {returns.mean():.4g} ± {returns.std():.3g}")
    return float(returns.mean())


# --- stage 3: recording -------------------------------------------------------------------------
def _record_level(cfg: SuiteConfig, level: str, pick: dict[str, Any], index: int) -> dict:
    """Records one level into staging and exports it to its OG-MARL path; returns its entry."""
    from marlvault.record.rollout import RolloutConfig, record_policy
    from marlvault.tools.export import export

    staging = cfg.root / _STAGING / level
    final = cfg.level_path(level)
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted build: ours, unfinished
    shutil.rmtree(final, ignore_errors=True)
    random_level = pick["tag"] == RANDOM
    one_row = cfg.layout == "og-marl"  # recorded in parallel rows, then laid end to end
    rollout = RolloutConfig(
        checkpoint=pick["checkpoint"], episodes=cfg.episodes,
        path=str(staging / "data.vlt" / "v") if one_row else str(final),
        mode=cfg.mode, epsilon=1.0 if random_level else cfg.epsilon,
        seed=cfg.seed + 1000 * (index + 1))  # fmt: skip
    t0 = time.perf_counter()
    recorded = record_policy(rollout)
    if one_row:
        prov = export(rollout.path, str(final), layout="og-marl")
    else:
        prov = {"episodes": recorded.episodes, "transitions": recorded.stats.num_rows
                * recorded.stats.num_steps}  # fmt: skip
    shutil.rmtree(staging, ignore_errors=True)
    return {"vault": str(final.relative_to(cfg.root)), "checkpoint": pick["tag"],
            "checkpoint_path": pick["checkpoint_rel"], "step": pick["step"],
            "score": pick["score"], "epsilon": rollout.epsilon, "seed": rollout.seed,
            "episodes": int(prov["episodes"]), "transitions": int(prov["transitions"]),
            "wall_s": round(time.perf_counter() - t0, 2)}  # fmt: skip


def level_stats(path: str | Path) -> dict[str, Any]:
    """Returns, 95 % interval of the mean, and coverage of one level's vault."""
    from marlvault.tools.coverage import coverage
    from marlvault.vault import Vault

    with Vault.open(str(path)) as v:
        eps = v.episodes
        rows = v.num_rows
    ret = np.asarray(eps["return"][eps["complete"]], np.float64)
    half = 1.96 * ret.std(ddof=1) / math.sqrt(ret.size) if ret.size > 1 else math.nan
    cov = coverage(str(path))
    return {"rows": rows, "complete": int(ret.size),
            "incomplete": int((~np.asarray(eps["complete"], bool)).sum()),
            "return_mean": float(ret.mean()), "return_std": float(ret.std()),
            "return_ci95": float(half), "return_min": float(ret.min()),
            "return_max": float(ret.max()), "joint_coverage": cov.joint_coverage,
            "agent_coverage": cov.agent_coverage}  # fmt: skip


def check_level(cfg: SuiteConfig, level: str, entry: dict[str, Any]) -> None:
    """A finished level is still what the manifest says: one row, its episodes, readable.

    Raises:
        VaultCorruptError: naming the level's vault, what differs, and the fix.
    """
    from marlvault.errors import VaultCorruptError
    from marlvault.vault.check import verify

    path = cfg.root / entry["vault"]
    report = verify(str(path))
    problems = list(report.problems)
    if not problems:
        stats = level_stats(path)
        rows_ok = stats["rows"] == 1 or cfg.layout == "rows"
        padded = stats["incomplete"] and cfg.layout == "og-marl"  # rows keep their open tails
        if not rows_ok or stats["complete"] != entry["episodes"] or padded:
            problems.append(f"expected {'1 row and ' if cfg.layout == 'og-marl' else ''}"
                            f"{entry['episodes']} complete episodes, found "
                            f"{stats['rows']} rows, {stats['complete']} complete and "
                            f"{stats['incomplete']} incomplete")
    if problems:
        raise VaultCorruptError(
            f"{path}: level {level} was finished by an earlier build but no longer checks out "
            f"({problems[0]}); fix: delete {path} and its entry under \"levels\" in "
            f"{cfg.root / MANIFEST}, then re-run the same command to rebuild that level")


# --- stage 4: the card --------------------------------------------------------------------------
def write_card(cfg: SuiteConfig, manifest: dict[str, Any]) -> Path:
    """``OUT/README.md`` and ``OUT/returns.png`` from the manifest and the level vaults."""
    from marlvault.tools.returns import plot_returns
    from marlvault.vault import Vault

    series = {}
    for level in cfg.levels:
        with Vault.open(str(cfg.root / manifest["levels"][level]["vault"])) as v:
            eps = v.episodes
        series[level.capitalize()] = np.asarray(eps["return"][eps["complete"]])
    plot_returns(series, cfg.root / "returns.png",
                 title=f"{cfg.env} {cfg.scenario}: episode returns per level")
    text = _card_text(cfg, manifest)
    (cfg.root / "README.md").write_text(text)
    return cfg.root / "README.md"


def _card_text(cfg: SuiteConfig, m: dict[str, Any]) -> str:
    sel, stages = m["stages"]["select"], m["stages"]
    lines = [f"# Dataset suite: {cfg.env} {cfg.scenario}", "",
             f"Built by marlvault `dataset build` from the {cfg.system} policies of "
             f"`{sel['run_dir']}`. Rebuild (or continue) with:", "", "```",
             m["command"], "```", "",
             "| level | vault | policy | training step | score | episodes | transitions | "
             "mean return ± 95 % CI | std | min | max | joint coverage | agent coverage |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for level in cfg.levels:
        e = m["levels"][level]
        s = e["stats"]
        step = "-" if e["step"] < 0 else f"{e['step']:,}"
        lines.append(
            f"| {level.capitalize()} | `{e['vault']}` | {e['checkpoint']} (ε = {e['epsilon']:g}) | "
            f"{step} | {e['score']:.3f} | {s['complete']:,} | {e['transitions']:,} | "
            f"{s['return_mean']:.3f} ± {s['return_ci95']:.3f} | {s['return_std']:.3f} | "
            f"{s['return_min']:.3f} | {s['return_max']:.3f} | {s['joint_coverage']:.3f} | "
            f"{s['agent_coverage']:.3f} |")
    lines += ["", "![returns per level](returns.png)", "",
              "## How the levels were chosen", "",
              f"Every kept checkpoint and the uniform random policy was scored by the mean team "
              f"return (sum over steps of the agents' mean reward) of {cfg.eval_episodes} episodes "
              f"rolled out as recorded (`{cfg.mode}`, ε = {cfg.epsilon:g}, one seed for all). "
              f"Random scored {sel['random_score']:.3f}, the best checkpoint "
              f"{sel['best_score']:.3f}. A level with fraction f takes the checkpoint nearest to "
              "random + f × (best − random): good 1, medium 0.5, poor 0.1, each checkpoint at most "
              "once; `random` is the uniform random policy. Each level's vault then holds "
              f"{cfg.episodes} complete episodes (more only when several end on the last step) "
              "recorded with another seed, so its mean return differs from the score.", "",
              "| candidate | training step | score ± std |", "|---|---:|---:|"]  # fmt: skip
    for c in sel["candidates"]:
        lines.append(f"| {c['tag']} | {c['step']:,} | {c['score']:.3f} ± {c['score_std']:.3f} |")
    lines += ["", "## Stages", "", "| stage | wall time (s) |", "|---|---:|"]
    for name in ("train", "select"):
        lines.append(f"| {name} | {stages[name]['wall_s']:.1f} |")
    for level in cfg.levels:
        lines.append(f"| record {level} | {m['levels'][level]['wall_s']:.1f} |")
    rel = f"{cfg.source}/{cfg.env}"
    shape = ("a one-row vault without padding (OG-MARL's layout)" if cfg.layout == "og-marl"
             else "a vault of parallel rows, one per environment, as recorded")
    lines += ["", "## Reading it", "",
              f"Each level is {shape}. With flashbax, as OG-MARL's loaders do:", "", "```python",
              "from flashbax.vault import Vault",
              f"vault = Vault(vault_name=\"{cfg.scenario}.vlt\", rel_dir=\"{cfg.out}/{rel}\", "
              "vault_uid=\"Good\")", "```", "",
              f"With marlvault: `marlvault vault info {cfg.level_path(cfg.levels[0])}`, "
              f"`marlvault offline train bc vault={cfg.level_path(cfg.levels[0])}`.", ""]  # fmt: skip
    return "\n".join(lines)


# --- the build ----------------------------------------------------------------------------------
def build_suite(cfg: SuiteConfig, log: Callable[[str], None] = print) -> SuiteResult:
    """Builds (or continues) the suite ``cfg`` describes; see the module docstring.

    Raises:
        VaultExistsError: ``cfg.out`` holds something other than a suite.
        ConfigError: bad options, or ``cfg.out`` is a suite built with other options.
        CheckpointError: ``--from-run`` has fewer kept checkpoints than levels.
        DatasetError: no checkpoint beats the random policy.
        VaultCorruptError: a level finished earlier no longer verifies.
    """
    manifest = open_manifest(cfg)
    root, stages = cfg.root, manifest["stages"]
    if "train" not in stages:
        t0 = time.perf_counter()
        run_dir = Path(cfg.from_run) if cfg.from_run else _train(cfg, log)
        stages["train"] = {"run_dir": str(run_dir), "reused": bool(cfg.from_run),
                           "wall_s": round(time.perf_counter() - t0, 2)}  # fmt: skip
        _write_manifest(root, manifest)
    else:
        log(f"[train] done earlier: {stages['train']['run_dir']}")
    run_dir = Path(stages["train"]["run_dir"])
    if "select" not in stages:
        t0 = time.perf_counter()
        found = candidates(run_dir)
        _check_run(cfg, run_dir, found)
        random_score = _score_all(cfg, found, log)
        chosen = choose_levels(cfg.levels, found, random_score)
        stages["select"] = {
            "run_dir": str(run_dir), "random_score": random_score,
            "best_score": max(c.score for c in found),
            "candidates": [dataclasses.asdict(c) for c in found],
            "chosen": {lv: {"tag": c.tag, "checkpoint": c.path or found[-1].path,
                            "checkpoint_rel": _rel(c.path, root), "step": c.step,
                            "score": c.score} for lv, c in chosen.items()},
            "wall_s": round(time.perf_counter() - t0, 2)}  # fmt: skip
        _write_manifest(root, manifest)
    chosen = stages["select"]["chosen"]
    for level in cfg.levels:
        log(f"[select] {level}: {chosen[level]['tag']} (score {chosen[level]['score']:.4g})")
    for i, level in enumerate(cfg.levels):
        if level in manifest["levels"]:
            check_level(cfg, level, manifest["levels"][level])
            log(f"[record] {level}: done earlier, verified: {cfg.level_path(level)}")
            continue
        log(f"[record] {level}: {cfg.episodes} episodes -> {cfg.level_path(level)}")
        entry = _record_level(cfg, level, chosen[level], i)
        entry["stats"] = level_stats(root / entry["vault"])
        manifest["levels"][level] = entry
        _write_manifest(root, manifest)
        s = entry["stats"]
        log(f"[record] {level}: {s['complete']} episodes, return {s['return_mean']:.4g} ± "
            f"{s['return_ci95']:.3g} (95 % CI), {entry['wall_s']:.1f} s")
    shutil.rmtree(root / _STAGING, ignore_errors=True)
    card = write_card(cfg, manifest)
    log(f"[card] {card}")
    return SuiteResult(cfg, manifest)


def _rel(path: str, root: Path) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
