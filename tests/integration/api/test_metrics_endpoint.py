"""``/metrics`` of a served API scraped over HTTP during a rollout, parsed with the client's own parser."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from dma_upgrade.adapters.api.app import create_app
from dma_upgrade.adapters.api.context import ApiContext
from dma_upgrade.adapters.api.server import ApiServer
from dma_upgrade.adapters.metrics import instrument
from dma_upgrade.adapters.packages.store import FilePackageStore
from dma_upgrade.adapters.runtime.rollout_runner import RolloutRunner
from dma_upgrade.engine.service import UpgradeService
from tests.exposition import Scrape
from tests.integration.api.harness import ApiHarness
from tests.integration.rollout_harness import FakeWaiter


def test_metrics_scraped_over_http_during_a_rollout_follow_it_to_the_end(
        make_api: Callable[..., ApiHarness]) -> None:
    api = make_api()
    api.add_agents()
    api.upload_package()
    metrics = instrument(api.container)
    service = UpgradeService(metrics.store, api.clock, api.container.ids, api.gateway)
    context = ApiContext(api.container, service, FilePackageStore(api.settings.data_dir / "packages"),
                         api.token_file)
    server = ApiServer(create_app(context, metrics.registry))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            def scrape() -> Scrape:
                api.container.projections.catch_up()  # what serve's follower does every poll
                response = anonymous.get("/metrics")  # open: no token
                assert response.status_code == 200, response.text
                return Scrape(response.text)

            rollout_id = api.start_rollout()["rollout_id"]
            assert scrape().value("dma_upgrade_rollouts", state="Planned") == 1

            during: list[Scrape] = []
            waiter = FakeWaiter(api.clock)
            waiter.on_wait = lambda _: during.append(scrape()) if not during else None
            RolloutRunner(service, api.gateway, waiter, poll_seconds=0.05).run(rollout_id)

            assert during, "the rollout never waited (delayed start is on by default)"
            mid = during[0]
            assert mid.value("dma_upgrade_rollouts", state="Running") == 1
            assert sum(mid.by("dma_upgrade_agent_upgrades", "state").values()) == 2
            assert (mid.value("dma_upgrade_agent_upgrades", state="Completed") or 0) < 2
            assert (mid.value("dma_upgrade_step_attempts_total", step="upload") or 0) >= 1

            after = scrape()
            assert after.value("dma_upgrade_rollouts", state="Completed") == 1
            assert after.value("dma_upgrade_agent_upgrades", state="Completed") == 2
            assert after.value("dma_upgrade_agent_upgrade_transitions_total", state="Completed") == 2
            assert after.value("dma_upgrade_database_up") == 1
            assert after.value("dma_upgrade_agents", version=api.service.agent("dma-1").version) == 2
    finally:
        server.stop()
