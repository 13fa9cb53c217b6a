"""pytest plugin (entry point ``pytest11: edgeharness``): options, collection of suites, fixtures.

It only wires pytest hooks to a :class:`harness.session.HarnessSession`; running, storing
and reporting live in the core. Every case of every ``suites/*.toml`` becomes its own
item under its device, e.g. ``suites/smoke.toml::host::face_landmark[host-xnnpack-t1]``
(the plan's entries: :func:`harness.plan.expand`).

Under pytest-xdist the items are scheduled by DEVICE across suite files (see
:func:`pytest_xdist_make_scheduler`): one device is never driven by two workers at once.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.config import ProjectConfig, from_environment
from harness.errors import GateError, HarnessError
from harness.plan import Entry, device_label, expand
from harness.results import Result
from harness.session import HarnessSession
from harness.suite import Case, load_suite, option_type
from harness.textsafe import escape, escape_lines

_SESSION_KEY = pytest.StashKey[HarnessSession]()
_REPORT_KEY = pytest.StashKey["Path | None"]()
_MISSING_KEY = pytest.StashKey[list[str]]()
_DISTRIBUTED_KEY = pytest.StashKey[bool]()
_CONFIG_KEY = pytest.StashKey[ProjectConfig]()
_RUN_ID_INPUT = "edgeharness_run_id"
FAILING = ("failed", "timeout", "device_lost")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgeharness", "edgeharness: benchmark TFLite/LiteRT models on devices")
    group.addoption("--harness-device", action="append", default=None, metavar="ID",
                    help="device to run suites on: host, adb:HOST:PORT, serial, ios:UDID (repeatable; default host)")
    group.addoption("--harness-inventory", default=None, metavar="FILE", help="devices.toml listing the devices")
    group.addoption("--harness-out", default="reports", metavar="DIR",
                    help="directory for results (JSONL + SQLite) and the report (default: reports)")
    group.addoption("--harness-report", default=None, metavar="FILE.html",
                    help="HTML report path (default: DIR/pytest-RUNID.html)")
    group.addoption("--harness-repetitions", type=option_type("repetitions"), default=None, metavar="N",
                    help="override every case's repetitions (separate processes)")
    group.addoption("--harness-runs", type=option_type("measured_runs"), default=None, metavar="N",
                    help="override every case's measured runs per repetition")
    group.addoption("--harness-baseline", default=None, metavar="NAME",
                    help="fail cases that regressed against this stored baseline (budgets are always checked)")
    group.addoption("--harness-max-regression", default=None, metavar="PCT",
                    help="allowed slowdown for --harness-baseline, e.g. 5%% (default: suite [gate] or 5%%)")
    group.addoption("--harness-noisy", default=None, choices=["fail", "warn"],
                    help="what a case too noisy to judge does (default fail)")
    group.addoption("--harness-remeasure", action="store_true", default=None,
                    help="with --harness-baseline: measure a case the gate cannot decide again, in batches, up to "
                         "the suite's [gate] max_repetitions/max_seconds (default: suite [gate] remeasure)")
    group.addoption("--harness-lease-timeout", type=float, default=None, metavar="S",
                    help="wait this long for a device another run holds, then skip the case (default 600)")
    group.addoption("--harness-lease-dir", default=None, metavar="DIR",
                    help="device lock directory shared by several stores (default: DIR/leases; env HARNESS_LEASE_DIR)")


def pytest_configure(config: pytest.Config) -> None:
    from harness.devices.discovery import selected_ids

    worker = getattr(config, "workerinput", None)  # set by pytest-xdist in a worker process
    try:
        ids = selected_ids(config.getoption("harness_device"), config.getoption("harness_inventory"))
        config.stash[_SESSION_KEY] = _session(config, ids, worker)
    except HarnessError as exc:  # a bad option or baseline: pytest's one-line usage error, no traceback
        raise pytest.UsageError(escape_lines(str(exc))) from None


def _session(config: pytest.Config, ids: list[str], worker: dict | None) -> HarnessSession:
    return HarnessSession(
        ids,
        config.getoption("harness_out"),
        report_path=config.getoption("harness_report"),
        repetitions=config.getoption("harness_repetitions"),
        measured_runs=config.getoption("harness_runs"),
        baseline=config.getoption("harness_baseline"),
        gate_overrides={"max_regression": config.getoption("harness_max_regression"),
                        "noisy": config.getoption("harness_noisy"),
                        "remeasure": config.getoption("harness_remeasure")},
        run_id=worker.get(_RUN_ID_INPUT) if worker else None,
        part=worker["workerid"] if worker and worker.get(_RUN_ID_INPUT) else None,
        lease_timeout_s=config.getoption("harness_lease_timeout"),
        lease_dir=config.getoption("harness_lease_dir") or os.environ.get("HARNESS_LEASE_DIR"),
    )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """pytest-xdist controller: every worker joins the controller's run (one run id, one report)."""
    config = node.config  # type: ignore[attr-defined]
    hs = config.stash[_SESSION_KEY]
    node.workerinput[_RUN_ID_INPUT] = hs.run_id  # type: ignore[attr-defined]
    config.stash[_DISTRIBUTED_KEY] = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hs = session.config.stash.get(_SESSION_KEY, None)
    if hs is None:
        return
    if session.config.stash.get(_DISTRIBUTED_KEY, False):
        hs.adopt_parts()  # every worker has finished: fold their results into the one run
        hs.judge_run()  # and gather their verdicts for one summary
    if not hs.part:  # a worker leaves the summary to the controller
        session.config.stash[_MISSING_KEY] = hs.baseline_not_measured()
        _github_summary(hs, session.config.stash[_MISSING_KEY])
    session.config.stash[_REPORT_KEY] = hs.finish(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Where the results and the report went (runs after sessionfinish, in pytest's summary block)."""
    hs = config.stash.get(_SESSION_KEY, None)
    report = config.stash.get(_REPORT_KEY, None)
    missing = config.stash.get(_MISSING_KEY, [])
    if hs is None or (report is None or hs.results_path is None) and not missing:
        return
    terminalreporter.section("edgeharness", sep="-")
    if missing:
        terminalreporter.write_line(escape(f"edgeharness: {len(missing)} case(s) of baseline {hs.baseline_name!r} "
                                           "not measured in this session (not gated):"), yellow=True)
        for line in missing:
            terminalreporter.write_line(escape(f"  {line}"), yellow=True)
    if report is None or hs.results_path is None:
        return
    terminalreporter.write_line(escape(f"edgeharness: results {hs.results_path}"))
    added = [r for done in hs.remeasured for r in done.added]
    if added:
        where = next(d.results_path for d in hs.remeasured if d.added)
        terminalreporter.write_line(escape(f"edgeharness: remeasure added {len(added)} result(s) of "
                                           f"{sum(1 for d in hs.remeasured if d.added)} undecided case(s): {where}"))
    terminalreporter.write_line(escape(f"edgeharness: report  {report}"))


def _project_config(config: pytest.Config) -> ProjectConfig:
    """``harness.toml`` (``$HARNESS_CONFIG`` or the invocation folder's), read once per session."""
    if _CONFIG_KEY not in config.stash:
        config.stash[_CONFIG_KEY] = from_environment(cwd=config.invocation_params.dir)
    return config.stash[_CONFIG_KEY]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".toml" and file_path.parent.name == "suites":
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFile(pytest.File):
    """A suite TOML file: one item per case per selected device."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            suite = load_suite(self.path, _project_config(self.config))
        except HarnessError as exc:
            raise self.CollectError(escape_lines(str(exc))) from None
        hs = self.config.stash[_SESSION_KEY]
        entries = expand(suite.cases() + suite.endpoint_cases(), hs.device_ids)
        for device_id in hs.device_ids:
            mine = [e for e in entries if e.device_id == device_id]
            hs.note_collected(device_id, [e.case for e in mine])
            yield DeviceCases.from_parent(self, name=device_label(device_id), entries=mine)

    class CollectError(Exception):
        pass


class DeviceCases(pytest.Collector):
    """The plan's entries of one suite on one device (their scheduling scope is the device, across suites)."""

    def __init__(self, *, entries: list[Entry], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.entries = entries

    def collect(self) -> Iterator[pytest.Item]:
        for entry in self.entries:
            yield CaseItem.from_parent(self, name=entry.case_id, case=entry.case, device_id=entry.device_id)


_DEVICE_SCOPE = "edgeharness-device::"


def device_scope(nodeid: str) -> str | None:
    """The xdist scope of a suite item's node id (``suites/a.toml::DEVICE::case``): its device, or None."""
    parts = nodeid.split("::")
    if len(parts) == 3 and parts[0].endswith(".toml"):
        return _DEVICE_SCOPE + parts[1]
    return None


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """pytest-xdist: schedule by device, so the items of a device run on one worker, in series.

    xdist's own ``loadscope`` groups by ``suites/X.toml::DEVICE``: two suite files aimed at one phone
    would run in two workers at once. Every distributing mode but ``each`` (which runs every item on
    every worker by design) gets this scheduler; items that are not suite cases keep loadscope's scope.
    """
    if config.getvalue("dist") in ("each", "no"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class DeviceScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return device_scope(nodeid) or super()._split_scope(nodeid)

    return DeviceScheduling(config, log)


class CaseFailed(Exception):
    """The case did not produce a measurement (failed, timed out, device lost)."""


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, device_id: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.case = case
        self.device_id = device_id
        self.result: Result | None = None

    def runtest(self) -> None:
        hs = self.config.stash[_SESSION_KEY]
        result = hs.run_case(self.device_id, self.case)
        self.result = result
        self.user_properties.extend(_properties(result))
        if result.status == "skipped":
            pytest.skip(escape(result.reason or "skipped"))  # reasons quote device output
        if result.status in FAILING:
            raise CaseFailed(escape(f"{result.status}: {result.reason}"))
        try:
            outcome = hs.judge(result, self.case)
        except GateError as exc:  # not comparable (another run context...): this item fails with the lines
            raise CaseFailed(escape_lines(f"gate: {exc}")) from None
        if outcome is not None:
            from harness.gate import junit_properties

            for verdict in outcome.verdicts:
                self.user_properties.extend(junit_properties(verdict))
            self.user_properties.extend(("gate_remeasure", line) for line in outcome.remeasure)
            if not outcome.passed:
                raise CaseFailed(escape("gate: " + "; ".join([*outcome.failures, *outcome.remeasure[-1:]])))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: object = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            return f"{self.name}: {excinfo.value}"
        return super().repr_failure(excinfo)  # type: ignore[return-value]

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"case {self.name} on {self.device_id}"


def _github_summary(hs: HarnessSession, missing: list[str]) -> None:
    """Append the gate's Markdown table to ``$GITHUB_STEP_SUMMARY`` (GitHub Actions shows it on the run page)."""
    import os

    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path or not (hs.verdicts or hs.breaches or missing):
        return
    from harness.gate import github_summary_markdown

    with open(path, "a", encoding="utf-8") as fh:
        fh.write(github_summary_markdown(hs.verdicts, hs.breaches, missing))


def _properties(result: Result) -> list[tuple[str, object]]:
    """Figures for ``--junitxml`` (``<property>`` elements)."""
    props: list[tuple[str, object]] = [("status", result.status), ("device", result.device.id),
                                       ("model_sha256", result.case.model_sha256)]
    lat = result.latency
    if lat and lat.samples_us:
        props += [("median_us", round(statistics.median(lat.samples_us), 2)), ("n_iterations", len(lat.samples_us)),
                  ("repetitions", len(lat.repetitions))]
    if result.memory and result.memory.peak_rss_mb is not None:
        props.append(("peak_rss_mb", round(result.memory.peak_rss_mb, 2)))
    return props


@pytest.fixture(scope="session")
def harness_session(request: pytest.FixtureRequest) -> HarnessSession:
    """The session's harness (run id, store, devices)."""
    return request.config.stash[_SESSION_KEY]


@pytest.fixture(scope="session")
def harness_device(harness_session: HarnessSession) -> object:
    """The first selected device (``--harness-device``, default the host)."""
    return harness_session.device(harness_session.device_ids[0])


@pytest.fixture
def bench(harness_session: HarnessSession, harness_device: object) -> object:
    """``bench(model, delegate=..., threads=..., measured_runs=...) -> Result`` on ``harness_device``."""

    def run(model: str | Path, **kwargs: object) -> Result:
        return harness_session.bench(model, device_id=harness_device.id, **kwargs)  # type: ignore[attr-defined]

    return run
