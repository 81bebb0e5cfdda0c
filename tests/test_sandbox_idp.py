"""The sandbox identity provider's control API: test residents made on demand, many at once."""

from __future__ import annotations

import asyncio

import httpx


async def test_residents_made_at_once_are_distinct_and_a_taken_identity_is_a_409(
    sandbox: httpx.AsyncClient,
) -> None:
    made = await asyncio.gather(
        *(sandbox.post("/_control/idp/residents", json={"level": 2}) for _ in range(30))
    )
    assert [r.status_code for r in made] == [201] * 30
    residents = [r.json() for r in made]
    assert len({r["id_card_number"] for r in residents}) == 30
    assert len({r["sub"] for r in residents}) == 30

    first = residents[0]
    again = await sandbox.post("/_control/idp/residents", json={"idCardNumber": first["id_card_number"]})
    assert again.status_code == 409, again.text
    same_sub = await sandbox.post("/_control/idp/residents", json={"sub": first["sub"]})
    assert same_sub.status_code == 409, same_sub.text
