"""The API process freezes the heap start-up built (GC_FREEZE, on by default): a full collection then
walks only what requests made since, so its pause no longer grows with the modules, routes,
catalogue snapshot and search model (bench/README.md: request_cost). Off for the other in-process
tests (make_settings), on here; unfrozen afterwards so the rest of the suite collects as before."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from bff.platform.lifecycle import settle_heap


@pytest.fixture
def unfreeze_after() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_start_up_and_the_search_model_leave_the_heap_frozen(make_client, unfreeze_after) -> None:
    assert gc.get_freeze_count() == 0
    client = await make_client(gc_freeze=True)
    root = client.app.state.root
    frozen_at_start = gc.get_freeze_count()
    assert frozen_at_start > 10_000  # every object start-up made, the app's routes among them
    # Once the model task has run, its callback froze what it built as well.
    assert root.catalogue_mirror.after_model == [settle_heap]
    await asyncio.wait_for(root.catalogue_mirror._model_task, 60)
    # The app still serves, and a collection now walks none of the frozen objects.
    assert (await client.get("/healthz")).status_code == 200
    young = len(gc.get_objects())
    assert young < gc.get_freeze_count()


async def test_off_means_nothing_is_frozen(make_client, unfreeze_after) -> None:
    client = await make_client()
    await asyncio.wait_for(client.app.state.root.catalogue_mirror._model_task, 60)
    assert gc.get_freeze_count() == 0
    assert client.app.state.root.catalogue_mirror.after_model == []
