"""``/metrics`` of a served API scraped over HTTP during a rollout, parsed with the client's own parser."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.exposition import Scrape
from tests.integration.api.harness import ApiHarness


def test_metrics_scraped_over_http_during_a_rollout_follow_it_to_the_end(
        make_api: Callable[..., ApiHarness]) -> None:
    api = make_api(metrics=True)
    api.add_agents()
    api.upload_package()
    with httpx.Client(base_url=api.server.url, timeout=30) as anonymous:
        def scrape() -> Scrape:
            api.container.projections.catch_up()  # what serve's follower does every poll
            response = anonymous.get("/metrics")  # open: no token
            assert response.status_code == 200, response.text
            return Scrape(response.text)

        rollout_id = api.start_rollout()["rollout_id"]
        assert scrape().value("dma_upgrade_rollouts", state="Planned") == 1

        during: list[Scrape] = []
        api.run(rollout_id, on_wait=lambda _: during.append(scrape()) if not during else None)

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
