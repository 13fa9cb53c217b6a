"""Suite files: defaults, overrides, expansion, and errors naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import from_environment
from harness.errors import ConfigError, SuiteError
from harness.gate import Budget
from harness.runners.base import ToolConfig
from harness.suite import load_suite, parse_suite

REPO = Path(__file__).resolve().parent.parent


def test_smoke_suite_expands_to_cases() -> None:
    suite = load_suite(REPO / "suites" / "smoke.toml")
    cases = suite.cases()
    assert len(cases) == len(suite.models) * 2 * 2
    assert cases[0].case_id("host") == "face_detection_front[host-cpu-t1]"
    assert {c.delegate for c in cases} == {"cpu", "xnnpack"}


def test_models_only_suite_uses_defaults() -> None:
    suite = parse_suite('[[models]]\nzoo = "face_landmark"\n', "x.toml")
    (model,) = suite.models
    assert model.delegates == ("cpu", "xnnpack") and model.threads == (1,)
    assert model.run.repetitions >= 3 and model.run.measured_runs >= 10


def test_per_model_overrides_and_relative_paths(tmp_path: Path) -> None:
    text = """
[suite]
threads = [1, 2]
[[models]]
path = "models/m.tflite"
threads = 4
delegates = ["xnnpack"]
[models.budget]
p50_ms = 5
"""
    path = tmp_path / "suite.toml"
    path.write_text(text)
    (model,) = load_suite(path).models
    assert model.path == (tmp_path / "models" / "m.tflite").resolve()
    assert model.threads == (4,) and model.delegates == ("xnnpack",)
    assert model.budget == Budget(p50_ms=5.0)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ('[suite]\nname = "s"\nwarmup = 3\n[[models]]\nzoo = "face_landmark"\n', 3, "unknown key 'warmup'"),
        ('[[models]]\nzoo = "face_landmark"\ndelegates = ["tpu"]\n', 3, "unknown delegate 'tpu'"),
        ('[[models]]\nzoo = "face_landmark"\n\n[[models]]\nzoo = "iris_landmark"\nthreads = [0]\n', 6, "threads"),
        ('[[models]]\nzoo = "face_landmark"\nrepetitions = "many"\n', 3, "expected int"),
        ('[suite]\nname = "s"\n[[models]]\nzoo = \n', 4, "invalid TOML"),
        ('[[models]]\nzoo = "nosuchmodel"\n', 2, "unknown zoo model"),
        ('[[models]]\nzoo = "face_landmark"\npath = "x.tflite"\n', 2, "exactly one"),
        ('[[models]]\nzoo = "face_landmark"\n[models.budget]\np42_ms = 3\n', 4, "unknown budget"),
    ],
)
def test_errors_name_file_line_and_key(text: str, line: int, needle: str) -> None:
    with pytest.raises(SuiteError) as err:
        parse_suite(text, "bad.toml")
    message = str(err.value)
    assert message.startswith(f"bad.toml:{line}"), message
    assert needle in message


def test_no_models_is_an_error() -> None:
    with pytest.raises(SuiteError, match="at least one"):
        parse_suite('[suite]\nname = "empty"\n', "e.toml")


def test_missing_suite_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "absent.toml")


def test_harness_toml_gives_tool_defaults_the_suite_can_override(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "harness.toml").write_text('[tool]\nbenchmark_model = { "arm64-v8a" = "bin/bm" }\n'
                                           'ios_app = "apps/Bench.ipa"\n')
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "a.toml").write_text('[[models]]\nzoo = "face_landmark"\n')
    (suites / "b.toml").write_text('[suite]\ntool = { ios_app = "Other.ipa" }\n[[models]]\nzoo = "face_landmark"\n')
    monkeypatch.chdir(tmp_path)
    project = from_environment()  # what the fronts do: ./harness.toml here
    assert project.path == tmp_path / "harness.toml"
    a = load_suite(suites / "a.toml", project).models[0].tool
    assert a.benchmark_model == {"arm64-v8a": str(tmp_path / "bin" / "bm")}
    assert a.ios_app == str(tmp_path / "apps" / "Bench.ipa")
    b = load_suite(suites / "b.toml", project).models[0].tool
    assert b.ios_app == str(suites / "Other.ipa") and b.binary_for("arm64-v8a")


def test_load_suite_reads_only_the_suite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hidden state: ./harness.toml and $HARNESS_CONFIG are the fronts' to read, not the suite loader's."""
    (tmp_path / "harness.toml").write_text('[tool]\nios_app = "apps/Bench.ipa"\n')
    (tmp_path / "other.toml").write_text('[tools]\nios_app = "broken"\n')
    (tmp_path / "s.toml").write_text('[[models]]\nzoo = "face_landmark"\n')
    monkeypatch.chdir(tmp_path)
    assert load_suite(tmp_path / "s.toml").models[0].tool.ios_app is None
    monkeypatch.setenv("HARNESS_CONFIG", str(tmp_path / "other.toml"))
    assert load_suite(tmp_path / "s.toml").models[0].tool == ToolConfig()


def test_malformed_harness_toml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "harness.toml").write_text('[tools]\nbenchmark_model = "x"\n')
    (tmp_path / "s.toml").write_text('[[models]]\nzoo = "face_landmark"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"harness.toml:1 \[tools\]: unknown or malformed section 'tools'"):
        from_environment()
    (tmp_path / "harness.toml").write_text('[tool]\nios_app = 3\n')
    with pytest.raises(ConfigError, match=r"harness.toml:2 \[tool.ios_app\]"):
        load_suite(tmp_path / "s.toml", from_environment())
    monkeypatch.setenv("HARNESS_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="HARNESS_CONFIG names a file that does not exist"):
        from_environment()


def test_every_toml_file_error_names_file_and_line(tmp_path):
    """Profiles, harness.toml and inventories read through the same reader as suites: file:line in the error."""
    from harness.devices.discovery import inventory_ids
    from harness.errors import ConfigError, ProfileError
    from harness.profiles import load_profile

    bad = tmp_path / "pixel-x.toml"
    bad.write_text('name = "pixel-x"\nplatform = \n')
    with pytest.raises(ProfileError) as err:
        load_profile(bad)
    assert err.value.line == 2 and f"{bad}:2" in str(err.value) and "invalid TOML" in str(err.value)
    with pytest.raises(ConfigError, match="cannot read inventory file"):
        inventory_ids(tmp_path / "missing.toml")
