"""The CLI as a client: the same commands with ``--server`` and ``--token`` through a real ``dma-upgrade serve``.

One server runs per module (a subprocess on a loopback port the OS picks, on a fresh data folder). The agents
are registered before it starts, because the serving engine simulates the inventory it finds at its
start. Everything after that goes through the API, and every read is compared with the same command
run on the local database: the same lines, the same exit codes. (That commands local by nature refuse
``--server`` is checked in process, in ``tests/unit/test_cli_server_options.py``.)
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dma_upgrade.adapters.access.tokens import Role, TokenFile
from dma_upgrade.adapters.packages.archive import build_package
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.versions import parse_version
from tests.e2e.cli import run_cli
from tests.e2e.engine_cluster import free_port
from tests.e2e.serve import serving

OLD = "10.4.0.0-14112"
NEW = "10.4.9.0-14794"
SPARE = "10.5.0.0-15000"
UNKNOWN = "00000000-0000-0000-0000-000000000000"
ROLES = {"operator": "operator-bot", "viewer": "viewer-bot", "admin": "admin-bot"}


def package_file(version: str) -> str:
    return f"DataMiner {version} Full Upgrade.dmupgrade"


def _made_package(version: str, folder: Path) -> Path:
    return build_package(PackageManifest.for_version(parse_version(version), PackageKind.FULL), folder)


@dataclass
class Served:
    """A running ``dma-upgrade serve``, its data folder, a token per role, and the rollout it ran."""

    data_dir: Path
    url: str
    tokens: dict[str, str]
    rollout_id: str = ""
    waited: subprocess.CompletedProcess[str] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"DMA_UPGRADE_DATA_DIR": str(self.data_dir)}

    def local(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env)

    def remote(self, *args: str, role: str | None = "operator") -> subprocess.CompletedProcess[str]:
        token = ("--token", self.tokens[role]) if role else ()
        return run_cli("--server", self.url, *token, *args, env=self.env)

    def ok(self, result: subprocess.CompletedProcess[str]) -> str:
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def fill(self, command: tuple[str, ...]) -> list[str]:
        """``command`` with ``{rollout}`` as the served rollout and ``{started}`` as the position it started at."""
        values = {"{rollout}": self.rollout_id}
        if "{started}" in command:
            exported = self.ok(self.local("audit", "export", "--format", "jsonl", "--rollout", self.rollout_id))
            events = [json.loads(line) for line in exported.splitlines() if '"position"' in line]
            values["{started}"] = str(next(e["position"] for e in events if e["event_type"] == "RolloutStarted"))
        return [values.get(word, word) for word in command]


def _started_rollout(output: str) -> str:
    match = re.search(r"Rollout ([0-9a-f-]{36}) (started|scheduled)", output)
    assert match is not None, output
    return match.group(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("remote")
    data_dir = folder / "data"
    env = {"DMA_UPGRADE_DATA_DIR": str(data_dir)}
    token_file = TokenFile(data_dir / "api-tokens.json")
    tokens = {role: token_file.add(name, Role.parse(role)) for role, name in ROLES.items()}
    for name, address, cluster in (("dma-01", "10.0.0.11", "north"), ("dma-solo", "10.0.0.21", "south")):
        added = run_cli("agents", "add", name, "--address", address, "--cluster", cluster, "--version", OLD, env=env)
        assert added.returncode == 0, added.stderr
    with serving(folder / "serve.log", "--poll-seconds", "0.5", env=env) as serve:
        state = Served(data_dir, serve.url, tokens)
        for version in (NEW, SPARE):
            state.ok(state.remote("packages", "upload", str(_made_package(version, folder))))
        state.waited = state.remote("upgrade", "start", "--package", package_file(NEW), "--all-agents-in-cluster",
                                    "north", "--no-delayed-start", "--no-auto-start", "--wait")
        state.rollout_id = _started_rollout(state.waited.stdout)
        yield state


def _one_error_line(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- a rollout through the server ----------------------------------------------------------------------------


def test_start_with_wait_through_the_server_follows_the_served_rollout_until_it_completes(served: Served) -> None:
    assert served.waited is not None
    shown = served.ok(served.waited)
    assert f"Rollout {served.rollout_id} · {NEW} · Completed" in shown
    assert "1 completed · 0 failed" in shown
    assert shown.strip().splitlines()[-1] == f"rollout {served.rollout_id}: Completed"


def test_events_appended_through_the_server_name_the_token_as_their_actor(served: Served) -> None:
    exported = served.ok(served.remote("audit", "export", "--format", "jsonl", "--rollout", served.rollout_id))
    events = [json.loads(line) for line in exported.splitlines() if '"position"' in line]
    planned = next(e for e in events if e["event_type"] == "RolloutPlanned")
    assert planned["actor"] == ROLES["operator"]


LISTS = [
    ("agents", "list"),
    ("packages", "list"),
    ("settings", "list"),
    ("progress",),
    ("progress", "{rollout}", "--at-position", "{started}", "--json"),
    ("history", "packages"),
    ("history", "agent", "dma-01"),
    ("audit", "verify"),
    ("projections", "status"),
]


@pytest.mark.parametrize("command", LISTS, ids=" ".join)
def test_a_read_through_the_server_prints_the_same_lines_as_on_the_local_database(
        served: Served, command: tuple[str, ...]) -> None:
    args = served.fill(command)
    remote = served.ok(served.remote(*args, role="viewer"))
    assert remote.strip()
    assert remote.splitlines() == served.ok(served.local(*args)).splitlines()


JSON_READS = [
    (("agents", "list"), "/api/v1/agents"),
    (("history", "packages"), "/api/v1/packages/history"),
    (("settings", "list"), "/api/v1/settings"),
]


@pytest.mark.parametrize(("command", "route"), JSON_READS, ids=[" ".join(c) for c, _ in JSON_READS])
def test_output_json_through_the_server_is_the_apis_answer_and_the_local_json(
        served: Served, command: tuple[str, ...], route: str) -> None:
    remote = json.loads(served.ok(served.remote(*command, "--output", "json", role="viewer")))
    answer = httpx.get(served.url + route, headers={"Authorization": f"Bearer {served.tokens['viewer']}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert remote == answer.json()
    assert remote == json.loads(served.ok(served.local(*command, "--output", "json")))


def test_a_dry_run_through_the_server_prints_the_local_plan_and_the_past_start_note(served: Served) -> None:
    args = ("upgrade", "start", "--package", package_file(SPARE), "--all-agents-in-cluster", "north", "--reboot",
            "--at", "2020-01-01T00:00:00Z", "--dry-run")
    remote = served.ok(served.remote(*args, role="viewer"))
    assert "--at 2020-01-01T00:00:00+00:00 is in the past: the rollout starts now" in remote
    assert "Plan (dry run: nothing started)" in remote
    assert remote.splitlines() == served.ok(served.local(*args)).splitlines()


def test_an_export_to_a_file_through_the_server_is_the_local_export_and_its_anchor_verifies(
        served: Served, tmp_path: Path) -> None:
    remote = served.remote("audit", "export", "--format", "jsonl", "--output", str(tmp_path / "remote"),
                           role="viewer")
    local = served.local("audit", "export", "--format", "jsonl", "--output", str(tmp_path / "local"))
    assert remote.returncode == local.returncode == 0, remote.stderr + local.stderr
    assert (tmp_path / "remote").read_bytes() == (tmp_path / "local").read_bytes()
    assert remote.stderr == local.stderr
    anchor = re.fullmatch(r"anchor (\S+) \(\d+ events\)\n", remote.stderr)
    assert anchor is not None, remote.stderr
    verified = served.ok(served.remote("audit", "verify", "--anchor", anchor.group(1), role="viewer"))
    assert "hash chain intact" in verified


def test_an_export_to_standard_output_through_the_server_streams_the_same_lines(served: Served) -> None:
    args = ("audit", "export", "--format", "csv", "--rollout", served.rollout_id)
    remote, local = served.remote(*args), served.local(*args)
    assert served.ok(remote) == served.ok(local)
    assert remote.stderr == local.stderr


def test_an_agent_left_stopped_is_started_through_the_server(served: Served) -> None:
    assert served.ok(served.remote("agents", "start", "dma-01")).strip() == "started agent dma-01"
    [row] = [line for line in served.ok(served.local("agents", "list")).splitlines() if "│ dma-01 " in line]
    assert "needs a manual start" not in row


def test_an_agent_added_through_the_server_is_listed_locally(served: Served) -> None:
    added = served.remote("agents", "add", "dma-spare", "--address", "10.0.0.99", "--cluster", "west",
                          "--version", OLD)
    assert served.ok(added).strip() == f"registered agent dma-spare (10.0.0.99) on {OLD}"
    assert "dma-spare" in served.ok(served.local("agents", "list"))


def test_a_lone_pair_member_through_the_server_is_refused_or_allowed_as_locally(served: Served) -> None:
    for name, partner, role, address in (("east-main", "east-backup", "main", "10.0.3.1"),
                                         ("east-backup", "east-main", "backup", "10.0.3.2")):
        served.ok(served.remote("agents", "add", name, "--address", address, "--cluster", "east", "--version", OLD,
                                "--failover-partner", partner, "--failover-role", role))
    lone = ("upgrade", "start", "--package", package_file(SPARE), "--agent", "east-main", "--failover-policy",
            "backup-first", "--dry-run")

    refused = _one_error_line(served.remote(*lone), 2, "agent east-main: its failover partner east-backup is not in "
                                                       "this rollout", "--allow-partial-pair")
    allowed = served.ok(served.remote(*lone, "--allow-partial-pair"))

    assert refused == _one_error_line(served.local(*lone), 2)
    assert "upgraded without its failover partner east-backup" in " ".join(allowed.split())
    assert allowed.splitlines() == served.ok(served.local(*lone, "--allow-partial-pair")).splitlines()


def test_control_commands_through_the_server_record_and_refuse_as_locally(served: Served) -> None:
    started = served.ok(served.remote("upgrade", "start", "--package", package_file(SPARE), "--agent", "dma-solo",
                                      "--upload-only", "--at", "2999-01-01T00:00:00Z"))
    rollout = _started_rollout(started)
    assert f"Rollout {rollout} scheduled for 2999-01-01T00:00:00Z" in started
    refused = served.remote("upgrade", "pause", rollout)
    assert _one_error_line(refused, 5) == _one_error_line(served.local("upgrade", "pause", rollout), 5)
    cancelled = served.ok(served.remote("upgrade", "cancel", rollout))
    assert cancelled.strip() == f"rollout {rollout}: cancel recorded, now Cancelled"
    followed = served.remote("upgrade", "run", rollout)
    assert followed.returncode == 9, followed.stdout + followed.stderr
    assert followed.stdout.strip().splitlines()[-1].startswith(f"rollout {rollout}: Cancelled")
    progress = served.remote("progress", rollout, "--follow")
    assert progress.returncode == 9, progress.stdout + progress.stderr
    assert progress.stdout.splitlines()[0].startswith(f"rollout {rollout}: Cancelled · ")
    _one_error_line(served.remote("upgrade", "resume", rollout), 5)


# --- errors ----------------------------------------------------------------------------------------------------


ERRORS = [
    (("progress", UNKNOWN), 3),
    (("upgrade", "retry-failed", "{rollout}"), 5),
    (("agents", "add", "dma-01", "--address", "10.0.0.11", "--version", OLD), 4),
    (("upgrade", "start", "--package", package_file(NEW), "--agent", "dma-01"), 4),
    (("progress", "{rollout}", "--at-position", "999999"), 2),
]


@pytest.mark.parametrize(("command", "code"), ERRORS, ids=[" ".join(c) for c, _ in ERRORS])
def test_an_error_through_the_server_is_the_local_error_line_and_exit_code(
        served: Served, command: tuple[str, ...], code: int) -> None:
    args = served.fill(command)
    remote = _one_error_line(served.remote(*args), code)
    assert remote == _one_error_line(served.local(*args), code)


def test_a_wrong_token_exits_10_naming_the_token_options(served: Served) -> None:
    result = run_cli("--server", served.url, "--token", "not-a-token", "agents", "list")
    _one_error_line(result, 10, "not valid", "--token")


def test_the_token_is_read_from_the_environment(served: Served) -> None:
    result = run_cli("agents", "list", env={"DMA_UPGRADE_SERVER": served.url,
                                            "DMA_UPGRADE_TOKEN": served.tokens["viewer"]})
    assert result.returncode == 0, result.stderr
    assert "dma-solo" in result.stdout


def test_a_viewer_cannot_cancel_a_rollout(served: Served) -> None:
    _one_error_line(served.remote("upgrade", "cancel", served.rollout_id, role="viewer"), 10,
                    "needs the operator role")


def test_settings_change_through_the_server_only_with_the_admin_role(served: Served) -> None:
    _one_error_line(served.remote("settings", "set", "reboot", "on"), 10, "needs the admin role")
    assert served.ok(served.remote("settings", "set", "reboot", "on", role="admin")).strip() == "reboot = on"
    [row] = [line for line in served.ok(served.local("settings", "list")).splitlines() if "│ reboot " in line]
    assert "on" in row.split("│")[2]


def test_an_unreachable_server_exits_6_with_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    _one_error_line(run_cli("--server", url, "--token", "x", "agents", "list"), 6, "server unreachable", url)


def test_a_server_that_is_not_a_url_exits_2() -> None:
    _one_error_line(run_cli("--server", "localhost:8600", "agents", "list"), 2, "http://")



def test_engines_through_the_server_names_the_serving_engine_and_the_role_it_plays(served: Served) -> None:
    log = (served.data_dir.parent / "serve.log").read_text()
    instance = re.search(r"engine instance (\S+)", log)
    assert instance is not None, log
    remote = served.ok(served.remote("engines", role="viewer"))
    local = served.ok(served.local("engines"))
    for listed in (remote, local):
        row = next((line for line in listed.splitlines() if instance.group(1) in line), None)
        assert row is not None and "projections" in row, listed


def test_snmp_ports_and_the_upgrade_path_through_the_server(served: Served) -> None:
    shown = served.ok(served.remote("agents", "set", "dma-solo", "--snmp-port", "1161"))
    assert "agent dma-solo: SLSNMPAgent on UDP 1161, Windows SNMP on UDP 161" in shown
    _one_error_line(served.remote("agents", "set", "dma-solo", "--snmp-port", "1", role="viewer"), 10)

    advice = served.ok(served.remote("upgrade", "path", "--agent", "dma-solo", "--to", SPARE, role="viewer"))
    assert f"from {OLD} (dma-solo) to {SPARE}: direct" in advice
    assert package_file(SPARE) in advice
    advice = served.ok(served.remote("upgrade", "path", "--from", "10.2.0 CU5", "--to", SPARE, role="viewer"))
    assert "3 hops" in advice and "10.3.0 with its latest CU" in advice and "10.4.0 with its latest CU" in advice
    _one_error_line(served.remote("upgrade", "path", "--from", "x", "--to", SPARE), 2, "invalid DataMiner version")
    _one_error_line(served.remote("upgrade", "path", "--agent", "nobody", "--to", SPARE), 3, "unknown agent")
