"""The hall kiosk's web app in a real browser (Debian's Chromium driven by Playwright), against a real
`sanxiang serve` process, the sandbox upstreams and the simulated kiosk device bridge over HTTP.

One journey: log in with the ID card + face (the bridge signs), search by pinyin initials, read the
guide, apply with e-licences (the form filled on screen), take a queue ticket for today's appointment,
rate the service with the hall indicators, then stay idle until the session's lifetime ends: the
countdown shows and afterwards nothing personal is left in the DOM, storage, cookies or history.
Screenshots of the main screens in zh, en and elder mode go to docs/screenshots/; every screen is
checked for accessible names (Chromium's own accessibility tree) and touch targets of at least 48 px.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth_helpers import login_resident, new_resident, staff_headers
from tests.conftest import free_port, make_settings, start_process, stop_process, sync_once, wait_http
from tests.test_journey_helpers import (
    advance,
    application,
    auth,
    book,
    bookable_item,
    key,
    open_days,
    serve_env,
)
from tests.test_sandbox_elicence import DEPT, ID_CARD

CHROMIUM = os.environ.get("KIOSK_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
# Test artefacts; `KIOSK_SCREENSHOTS=docs/screenshots` refreshes the committed ones the README links.
SHOTS = REPO / os.environ.get(
    "KIOSK_SCREENSHOTS", str(Path(tempfile.gettempdir()) / "sanxiang-test-logs" / "kiosk-screenshots")
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]' (playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (Debian) or set KIOSK_CHROMIUM; "
        "`playwright install` is not used (no browser download)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
async def bridge_url() -> Any:
    port = free_port()
    yield f"http://127.0.0.1:{port}", port


@pytest.fixture(scope="module")
async def kiosk_stack(services: Any, sandbox_url: str, bridge_url: Any) -> Any:
    """A real BFF process and the kiosk bridge (allowing only that BFF's page), both over HTTP."""
    bridge, bridge_port = bridge_url
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serve_env(
        services,
        sandbox_url,
        port,
        CASE_NOTIFY_URL=f"{url}/api/v1/case-events",
        KIOSK_BRIDGE_URL=bridge,
        WECHATPAY_URL=f"{sandbox_url}/wechatpay",
        PAYMENT_NOTIFY_URL=f"{url}/api/v1/payments/wechat/notify",
    )
    await sync_once(make_settings(services, sandbox_url))
    api = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-kiosk")
    device = start_process(
        [
            sys.executable,
            "-m",
            "sandbox.kiosk_bridge",
            "--port",
            str(bridge_port),
            "--kiosk-id",
            f"kiosk-browser-{port}",
            "--allow-origin",
            url,
        ],
        dict(os.environ),
        "kiosk-bridge",
    )
    try:
        await asyncio.to_thread(wait_http, f"{url}/healthz", api)
        await asyncio.to_thread(wait_http, f"{bridge}/bridge/status", device)
        yield url, bridge
    finally:
        stop_process(device)
        stop_process(api)


@pytest.fixture
async def registered(kiosk_stack: Any, client: httpx.AsyncClient) -> Any:
    """The bridge's public key registered by staff (through the API, in-process, same database)."""
    url, bridge = kiosk_stack
    async with httpx.AsyncClient(base_url=bridge, timeout=10) as device:
        key = (await device.get("/_control/public-key")).json()
        response = await client.post(
            "/api/v1/staff/kiosks",
            headers=staff_headers(client),
            json={
                "kioskId": key["kioskId"],
                "name": "政务大厅自助机（浏览器测试）",
                "hallId": "hall-430102-01",
                "publicKey": key["publicKey"],
            },
        )
        assert response.status_code in (201, 409), response.text
        yield url, bridge, device


async def test_bridge_signs_only_resident_calls_for_the_page(registered: Any) -> None:
    url, bridge, device = registered
    ok = await device.post(
        "/bridge/sign", json={"method": "GET", "path": "/api/v1/me"}, headers={"Origin": url}
    )
    assert ok.status_code == 200 and set(ok.json()["headers"]) == {
        "X-Kiosk-Id",
        "X-Kiosk-Timestamp",
        "X-Kiosk-Nonce",
        "X-Kiosk-Signature",
    }
    other_origin = await device.post(
        "/bridge/sign", json={"method": "GET", "path": "/api/v1/me"}, headers={"Origin": "http://evil.test"}
    )
    assert other_origin.status_code == 403
    staff = await device.post(
        "/bridge/sign", json={"method": "POST", "path": "/api/v1/staff/kiosks"}, headers={"Origin": url}
    )
    assert staff.status_code == 403 and staff.json()["code"] == "path_refused"
    elsewhere = await device.post(
        "/bridge/sign", json={"method": "GET", "path": "/healthz"}, headers={"Origin": url}
    )
    assert elsewhere.status_code == 403
    await device.delete("/_control/card")
    empty = await device.post("/bridge/login", json={}, headers={"Origin": url})
    assert empty.status_code == 409 and empty.json()["code"] == "no_card"
    # The page is served with a policy that lets it reach the BFF and the bridge only.
    async with httpx.AsyncClient(base_url=url) as bff:
        page = await bff.get("/kiosk/")
        assert page.status_code == 200 and "<main" in page.text
        policy = page.headers["content-security-policy"]
        assert f"connect-src 'self' {bridge}" in policy and "default-src 'self'" in policy
        assert (await bff.get("/kiosk/app.js")).headers["content-type"].startswith("text/javascript")
        schema = (await bff.get("/schema/openapi.json")).json()
        assert not [p for p in schema["paths"] if p.startswith("/kiosk")]


def initials(name: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return "".join(p[0].upper() for p in lazy_pinyin(name, style=Style.FIRST_LETTER) if p[:1].isalpha())


async def kiosk_item(db: Any) -> dict[str, str]:
    """A main item a kiosk can take: kiosk-enabled, online, every required material an e-licence or
    the application form (which the kiosk screen fills in)."""
    rows = await db.fetch(
        """
        SELECT e.catalog_code, e.region_code, e.body ->> 'name' AS name
        FROM sandbox.catalogue_entries e
        WHERE e.region_code = '430000' AND e.status = 'active' AND e.body ->> 'parent_code' IS NULL
          AND (e.body ->> 'is_service_terminals')::boolean AND (e.body ->> 'is_online')::boolean
          AND char_length(e.body ->> 'name') BETWEEN 5 AND 10
          AND NOT EXISTS (
            SELECT 1 FROM jsonb_array_elements(e.body -> 'materials') m
            WHERE (m ->> 'required')::boolean AND m ->> 'elicence_type' IS NULL
              AND NOT coalesce((m ->> 'blank_form')::boolean, false))
        ORDER BY char_length(e.body ->> 'name') DESC, e.catalog_code
        """
    )
    assert rows, "the sandbox catalogue has no kiosk-enabled item with e-licence materials"
    row = rows[0]
    return {"code": row["catalog_code"], "region": row["region_code"], "name": row["name"]}


# WCAG 2 contrast of each visible text node's colour against the first opaque background behind it.
CONTRAST_JS = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (e) => {
    for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length === 3 || c[3] === 1) return c; }
    return [255, 255, 255];
  };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const e = n.parentElement;
    if (!n.textContent.trim() || !e || e.offsetParent === null || e.closest('[hidden]')) continue;
    const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(background(e))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) out.push(`${n.textContent.trim().slice(0, 20)} ${ratio.toFixed(2)}`);
  }
  return out;
}"""


async def dark_cells(page: Any, text: str) -> int:
    """How many dark cells the vendored encoder gives `text` (what the page's QR code must draw)."""
    count: int = await page.evaluate(
        """text => { const c = qrcode(0, "M"); c.addData(text); c.make(); let n = 0;
           for (let r = 0; r < c.getModuleCount(); r++) for (let k = 0; k < c.getModuleCount(); k++)
             if (c.isDark(r, k)) n++; return n; }""",
        text,
    )
    return count


class Browser:
    """One kiosk page in Chromium, with every request it makes recorded."""

    def __init__(self, page: Any, origins: set[str]) -> None:
        self.page = page
        self.origins = origins
        self.requests: list[Any] = []
        page.on("request", lambda request: self.requests.append(request))  # noqa: PLW0108 - Playwright needs a plain function
        self.bridge_logins: list[str] = []  # what the bridge answered the page's login taps
        self.shows: list[dict[str, Any]] = []  # the 亮证 answers (payloads) the page was given
        page.on("response", self._on_response)
        # Script errors and policy (CSP) violations; refused API calls are logged as failed loads.
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda m: (
                self.errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )

    async def _on_response(self, response: Any) -> None:
        if response.url.endswith("/bridge/login") and response.request.method == "POST":
            self.bridge_logins.append(await response.text())
        if response.url.endswith("/show") and response.status == 201:
            self.shows.append(await response.json())

    async def settled(self, screen: str | None = None) -> None:
        await self.page.wait_for_function(
            "s => !document.querySelector('#app .loading') && (!s || document.querySelector('#app').dataset.screen === s)",
            arg=screen,
        )

    async def tap(self, name: str | re.Pattern[str], screen: str | None = None, role: str = "button") -> None:
        await self.page.get_by_role(role, name=name, exact=True).first.click()
        await self.settled(screen)

    async def check_accessible(self, where: str) -> None:
        """Chromium's accessibility tree: every control has a name; every visible target >= 48 px."""
        cdp = await self.page.context.new_cdp_session(self.page)
        tree = await cdp.send("Accessibility.getFullAXTree")
        await cdp.detach()
        controls = {"button", "radio", "textbox", "link", "checkbox", "combobox", "slider", "switch"}
        unnamed = [
            n.get("role", {}).get("value")
            for n in tree["nodes"]
            if not n.get("ignored")
            and n.get("role", {}).get("value") in controls
            and not str(n.get("name", {}).get("value", "")).strip()
        ]
        assert unnamed == [], f"{where}: controls without an accessible name: {unnamed}"
        small = await self.page.evaluate(
            """() => [...document.querySelectorAll('button, a, input, select, textarea, [role=radio]')]
                .filter(e => e.offsetParent !== null)
                .map(e => [e.textContent.trim(), e.getBoundingClientRect()])
                .filter(([, r]) => r.width < 48 || r.height < 48)
                .map(([t, r]) => `${t} ${Math.round(r.width)}x${Math.round(r.height)}`)"""
        )
        assert small == [], f"{where}: touch targets under 48 px: {small}"
        low = await self.page.evaluate(CONTRAST_JS)
        assert low == [], f"{where}: text below WCAG AA contrast (4.5:1): {low}"

    async def shots(self, name: str, screen: str) -> None:
        """zh, en and elder screenshots of the current screen (the switches re-render it)."""
        await self.check_accessible(f"{name} zh")
        await self.page.screenshot(path=SHOTS / f"kiosk-{name}-zh.png")
        await self.tap("English", screen)
        await self.check_accessible(f"{name} en")
        await self.page.screenshot(path=SHOTS / f"kiosk-{name}-en.png")
        await self.tap("中文", screen)
        await self.tap("长辈版", screen)
        await self.check_accessible(f"{name} elder")
        spacing = await self.page.evaluate(
            "() => parseFloat(getComputedStyle(document.body).lineHeight) / parseFloat(getComputedStyle(document.body).fontSize)"
        )
        assert spacing >= 1.3
        visible_secondary = await self.page.evaluate(
            "() => [...document.querySelectorAll('.secondary')].filter(e => e.offsetParent !== null).length"
        )
        assert visible_secondary == 0, f"{name}: secondary items shown in elder mode"
        await self.page.screenshot(path=SHOTS / f"kiosk-{name}-elder.png")
        await self.tap("长辈版", screen)

    async def personal_leftovers(self, secrets: list[str]) -> list[str]:
        html = await self.page.content()
        text = await self.page.evaluate("() => document.body.innerText")
        return [s for s in secrets if s and (s in html or s in text)]


@pytest.mark.slow
async def test_kiosk_journey_in_a_real_browser(
    registered: Any, sandbox: httpx.AsyncClient, db: Any, client: httpx.AsyncClient
) -> None:
    url, bridge, device = registered
    api = httpx.AsyncClient(base_url=url, timeout=30)
    resident = await new_resident(sandbox, level=3)
    licence = {"type_code": ID_CARD, "issuer": "ga"}
    body = {"holder_code": resident["id_card_number"], "holder_name": resident["name"], **licence}
    id_card = await sandbox.post("/_control/elicence/licences", json=body)
    assert id_card.status_code == 201, id_card.text
    # The resident booked on their phone; today at the hall they use the kiosk.
    phone = await login_resident(api, sandbox, resident=resident, level=3)
    booked_item = await bookable_item(db)
    day = (await open_days(api, phone, booked_item))[0]
    appointment = await book(api, phone, day["slots"][0]["slotId"])
    # A case applied for online earlier, now concluded: rated at the kiosk on the online indicators.
    earlier = await bookable_item(db, main_only=True)
    applied = await api.post(
        "/api/v1/cases", json=await application(api, phone, earlier), headers=auth(phone, key())
    )
    assert applied.status_code == 201, applied.text
    online_case = applied.json()["case"]
    await advance(sandbox, online_case["projectNo"], "accept", opinion="材料齐全，予以受理")
    await advance(sandbox, online_case["projectNo"], "conclude", result_code="0", licence_no="湘证2026000998")
    item = await kiosk_item(db)
    # The wallet holds a licence of every type the item takes in place of a scan (one ID card is enough
    # for the ID card material; the licence shown at the counter later is that one).
    guide = (await api.get(f"/api/v1/items/{item['code']}", params={"region": item["region"]})).json()["item"]
    wallet = {}
    for kind in {m["elicenceType"] for m in guide["materials"] if m["required"] and m["elicenceType"]} - {
        ID_CARD
    }:
        body = {"holder_code": resident["id_card_number"], "holder_name": resident["name"], "type_code": kind}
        made = await sandbox.post("/_control/elicence/licences", json=body)
        assert made.status_code == 201, made.text
        wallet[kind] = made.json()["licence_id"]
    # The booking system's clock stands ten minutes before the slot: check-in is open "today".
    starts = datetime.fromisoformat(day["slots"][0]["startsAt"])
    offset = int((starts - timedelta(minutes=10)).timestamp() - datetime.now().timestamp())
    await sandbox.put("/booking/_control/settings", json={"clockOffsetS": offset})
    card = {"name": resident["name"], "idNumber": resident["id_card_number"]}
    await device.put("/_control/card", json=card)
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="kiosk-chromium-")
    try:
        async with playwright_api.async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1080, "height": 1920},
                device_scale_factor=0.5,
                locale="zh-CN",
                timezone_id="Asia/Shanghai",
                has_touch=True,
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                page.set_default_timeout(10_000)
                await page.clock.install()
                kiosk = Browser(page, {url, bridge})
                await page.goto(f"{url}/kiosk/?bridge={bridge}")
                await kiosk.settled("login")
                assert page.url == f"{url}/kiosk/"  # configuration does not stay in the address bar
                await kiosk.check_accessible("login")
                await page.screenshot(path=SHOTS / "kiosk-login-zh.png")

                # No card in the reader, then a face that does not match: the page says so plainly.
                await device.delete("/_control/card")
                await kiosk.tap("开始识别", "login")
                await page.get_by_text("未检测到身份证").wait_for()
                await device.put("/_control/card", json=card)
                await device.put("/_control/face", json={"score": 0.4, "liveness": True})
                await kiosk.tap("开始识别", "login")
                await page.get_by_text("人脸比对未通过").wait_for()
                await device.put("/_control/face", json={"score": 0.97, "liveness": True})
                # Log in: the bridge reads the card, matches the face and signs; the page posts it.
                await kiosk.tap("开始识别", "home")
                masked = (await api.get("/api/v1/me", headers=auth(phone))).json()["name"]
                assert masked != resident["name"]
                assert await page.get_by_role("heading", name=f"您好，{masked}").count() == 1
                await kiosk.shots("home", "home")

                # Search by pinyin initials on the on-screen keyboard, then the guide.
                await kiosk.tap("查事项", "search")
                for letter in initials(item["name"]):
                    await kiosk.tap(letter, "search")
                await kiosk.tap("搜索", "search")
                result = page.get_by_role("button", name=re.compile(re.escape(item["name"])))
                assert await result.count() >= 1, await page.locator("#search-results").inner_text()
                await kiosk.shots("search", "search")
                await result.first.click()
                await kiosk.settled("guide")
                assert await page.get_by_role("heading", name=item["name"]).count() == 1
                await kiosk.shots("guide", "guide")

                # Apply here with e-licences: the phone typed on the keypad, the form generated.
                await kiosk.tap("在本机申请", "apply")
                for digit in "13800138000":
                    await kiosk.tap(digit, "apply")
                # The case system is down for the first try: the page says so and offers 重试, which
                # sends the same Idempotency-Key (one intended action, one key).
                await sandbox.put("/_control/faults/cases", json={"errorRate": 1.0, "errorKind": "503"})
                await kiosk.tap("提交申报", "apply")
                await page.get_by_role("alert").wait_for()
                await sandbox.delete("/_control/faults/cases")
                await kiosk.tap("重试", "applied")
                tries = [r for r in kiosk.requests if r.method == "POST" and r.url == f"{url}/api/v1/cases"]
                assert len(tries) == 2 and len({r.headers["idempotency-key"] for r in tries}) == 1
                number = (await page.locator(".ticket").inner_text()).strip()
                cases = (await api.get("/api/v1/cases", headers=auth(phone))).json()["items"]
                kiosk_case = next(c for c in cases if c["itemCode"] == item["code"])
                assert number in {kiosk_case["projectNo"], kiosk_case["id"]}
                # The case names the wallet's licences that stood in for the scans.
                wallet[ID_CARD] = id_card.json()["licence_id"]
                filed = (await api.get(f"/api/v1/cases/{kiosk_case['id']}", headers=auth(phone))).json()
                licences = [m for m in filed["materials"] if m["kind"] == "elicence"]
                assert licences, filed["materials"]
                for used in licences:
                    ref = wallet[used["elicenceType"]]
                    assert used["licenceNumber"] == ref[:3] + "*" * (len(ref) - 7) + ref[-4:], used
                # The department accepts it and issues a fee: paid here by scanning the order's QR code.
                await advance(sandbox, kiosk_case["projectNo"], "accept", opinion="材料齐全，予以受理")
                issued = await sandbox.post(
                    f"/cases/_control/applications/{kiosk_case['projectNo']}/fee",
                    json={
                        "lines": [{"name": "工本费", "amount_fen": 1550}],
                        "payable_by": (date.today() + timedelta(days=7)).isoformat(),
                        "deliver": True,
                    },
                )
                assert issued.status_code == 201, issued.text
                for _ in range(100):
                    fee = (await api.get(f"/api/v1/cases/{kiosk_case['id']}", headers=auth(phone))).json()[
                        "fee"
                    ]
                    if fee:
                        break
                    await asyncio.sleep(0.1)
                assert fee and fee["owedFen"] == 1550, fee
                await kiosk.tap("回首页", "home")
                await kiosk.tap("扫码缴费", "pay")
                await page.get_by_role("button", name=re.compile(r"¥15\.50")).first.click()
                await kiosk.settled("payQr")
                qr = page.get_by_role("img", name=re.compile("扫一扫"))
                assert await qr.count() == 1 and await page.locator(".qr path").get_attribute("d")
                await kiosk.check_accessible("pay by QR")
                await page.screenshot(path=SHOTS / "kiosk-pay-zh.png")
                orders = [r for r in kiosk.requests if r.method == "POST" and r.url.endswith("/payments")]
                assert len(orders) == 1
                order = (await api.get(f"/api/v1/cases/{kiosk_case['id']}", headers=auth(phone))).json()[
                    "fee"
                ]
                paying = (await api.get(f"/api/v1/payments/{order['paymentId']}", headers=auth(phone))).json()
                assert paying["tradeType"] == "NATIVE"
                code_url = await db.fetchval(
                    "SELECT code_url FROM bff.payment_orders WHERE id::text = $1", order["paymentId"]
                )
                assert code_url.startswith("weixin://")
                # The code on the screen is that order's: its dark cells are those of the code_url.
                drawn = (await page.locator(".qr path").get_attribute("d")).count("M")
                assert drawn == await dark_cells(page, code_url) > 0
                # The resident scans and pays on their phone; the screen's next look at the order sees it.
                scanned = await sandbox.post(
                    f"/_control/wechatpay/orders/{paying['outTradeNo']}/pay", json={}
                )
                assert scanned.status_code == 200, scanned.text
                await page.clock.run_for(2500)
                await kiosk.settled("paid")
                assert await page.get_by_text(paying["outTradeNo"]).count() == 1
                settled = (await api.get(f"/api/v1/cases/{kiosk_case['id']}", headers=auth(phone))).json()[
                    "fee"
                ]
                assert settled["owedFen"] == 0, settled
                # The department concludes it: a hall case, rated with the hall indicators.
                await advance(
                    sandbox, kiosk_case["projectNo"], "conclude", result_code="0", licence_no="湘证2026000999"
                )
                for _ in range(100):
                    detail = (await api.get(f"/api/v1/cases/{kiosk_case['id']}", headers=auth(phone))).json()
                    if detail["case"]["ratingDue"]:
                        break
                    await asyncio.sleep(0.1)
                assert detail["case"]["ratingDue"], detail

                # Today's appointment -> a queue ticket.
                await kiosk.tap("回首页", "home")
                await kiosk.tap("预约取号", "appointments")
                await page.get_by_role("button", name=re.compile("^取号")).first.click()
                await kiosk.settled("ticket")
                ticket = (await page.locator(".ticket").inner_text()).strip()
                assert ticket.startswith("A")
                done = (
                    await api.get(f"/api/v1/appointments/{appointment['id']}", headers=auth(phone))
                ).json()
                assert done["status"] == "checked_in" and done["ticketNo"] == ticket
                await kiosk.shots("check-in", "ticket")
                # Printed, the receipt is the ticket alone: no header, switches or buttons.
                await page.emulate_media(media="print")
                printed = await page.evaluate(
                    """() => [...document.querySelectorAll('header, button')].filter(e => e.offsetParent !== null).length"""
                )
                assert printed == 0 and await page.locator(".ticket").is_visible()
                await page.emulate_media(media="screen")

                # Rate the concluded case with the hall indicators.
                await kiosk.tap("回首页", "home")
                await kiosk.tap("评价服务", "rate")
                await page.get_by_role(
                    "button", name=re.compile(re.escape(kiosk_case["itemName"]))
                ).first.click()
                await kiosk.settled("rateCase")
                for indicator in ("整体满意度", "服务效率", "服务水平", "服务态度"):
                    await kiosk.tap(f"{indicator}：非常满意", "rateCase", role="radio")
                await kiosk.shots("rating", "rateCase")
                await kiosk.tap("提交评价", "rated")
                rated = (await api.get(f"/api/v1/cases/{kiosk_case['id']}", headers=auth(phone))).json()
                assert rated["ratingId"] is not None

                # The online case: the hall set is refused, the BFF names the online set, the screen
                # asks exactly those (整体满意度 kept) and the rating goes through.
                await kiosk.tap("回首页", "home")
                await kiosk.tap("评价服务", "rate")
                await page.get_by_role(
                    "button", name=re.compile(re.escape(online_case["projectNo"]))
                ).first.click()
                await kiosk.settled("rateCase")
                for indicator in ("整体满意度", "服务效率", "服务水平", "服务态度"):
                    await kiosk.tap(f"{indicator}：满意", "rateCase", role="radio")
                await kiosk.tap("提交评价", "rateCase")
                await page.get_by_role("radio", name="平台操作性：满意").wait_for()
                assert await page.get_by_role("radio", name="服务态度：满意").count() == 0
                for indicator in ("办事效率", "办事指南精确度", "办事便捷度", "平台操作性"):
                    await kiosk.tap(f"{indicator}：满意", "rateCase", role="radio")
                await kiosk.check_accessible("online rating")
                await kiosk.tap("提交评价", "rated")
                rated = (await api.get(f"/api/v1/cases/{online_case['id']}", headers=auth(phone))).json()
                assert rated["ratingId"] is not None

                # 亮证: the wallet (masked), a licence shown as a QR code, checked once by the counter.
                await kiosk.tap("回首页", "home")
                await kiosk.tap("我的证照", "licences")
                assert resident["id_card_number"] not in await page.locator("#app").inner_text()  # masked
                await page.get_by_role("button", name=re.compile("居民身份证")).first.click()
                await kiosk.settled("licenceShow")
                await kiosk.check_accessible("licence show")
                await page.screenshot(path=SHOTS / "kiosk-licence-show-zh.png")
                assert len(kiosk.shows) == 1
                payload = kiosk.shows[0]["payload"]
                drawn = (await page.locator(".qr path").get_attribute("d")).count("M")
                assert drawn == await dark_cells(page, payload) > 0
                counter = {
                    "payload": payload,
                    "purpose": "窗口核验身份",
                    "departmentCode": DEPT["department_code"],
                    "departmentName": DEPT["department_name"],
                }
                checked = await client.post(
                    "/api/v1/staff/licence-checks",
                    json=counter,
                    headers={**staff_headers(client), "Idempotency-Key": key()},
                )
                assert checked.status_code == 200, checked.text
                again = await client.post(
                    "/api/v1/staff/licence-checks",
                    json=counter,
                    headers={**staff_headers(client), "Idempotency-Key": key()},
                )
                assert again.status_code == 409 and again.json()["code"] == "licence_show_used"

                # Every request went to the BFF or the bridge; every state change carried a key; every
                # authenticated API call was signed; elder mode was told to the API.
                hosts = {re.match(r"^https?://[^/]+", r.url).group(0) for r in kiosk.requests}  # type: ignore[union-attr]
                assert hosts <= {url, bridge}, hosts
                calls = [r for r in kiosk.requests if r.url.startswith(f"{url}/api/v1/")]
                posts = [r for r in calls if r.method == "POST" and "/auth/" not in r.url]
                assert posts and all(r.headers.get("idempotency-key") for r in posts)
                # A fresh key per intended action: only the retried application shares one.
                assert len({r.headers["idempotency-key"] for r in posts}) == len(posts) - 1
                assert len([r for r in posts if "/uploads" in r.url]) == 1  # the form went up once
                signed = [r for r in calls if r.headers.get("authorization")]
                assert signed and all(r.headers.get("x-kiosk-signature") for r in signed)
                assert any(r.headers.get("x-ui-mode") == "elder" for r in calls)

                # Idle (the session's lifetime, AUTH_KIOSK_IDLE_S): the countdown; 继续使用 keeps the
                # session (the page refreshes its token, signed, once half its life is gone).
                idle = 180
                await page.clock.fast_forward((idle - 10) * 1000)
                await page.wait_for_selector("#idle:not([hidden])")
                assert "秒后将自动退出" in await page.locator("#idle-text").inner_text()
                await kiosk.check_accessible("idle countdown")
                await kiosk.tap("继续使用")
                assert await page.locator("#idle").is_hidden()
                await kiosk.tap("回首页", "home")
                await kiosk.tap("预约取号", "appointments")
                refreshed = [r for r in kiosk.requests if r.url.endswith("/api/v1/auth/refresh")]
                assert refreshed and (await refreshed[-1].response()).status == 200  # type: ignore[union-attr]
                # Then nobody touches it: the countdown runs out and the page wipes itself.
                await page.clock.fast_forward((idle - 10) * 1000)
                await page.wait_for_selector("#idle:not([hidden])")
                await page.clock.fast_forward(15_000)
                await kiosk.settled("login")
                secrets = [
                    resident["name"],
                    masked,
                    resident["id_card_number"],
                    resident["id_card_number"][-4:] + "</",
                    "13800138000",
                    ticket,
                    number,
                    kiosk_case["projectNo"],
                    online_case["projectNo"],
                    item["name"],
                ]
                assert await kiosk.personal_leftovers(secrets) == []
                storage = await page.evaluate(
                    "() => [localStorage.length, sessionStorage.length, document.cookie, history.length, location.href]"
                )
                assert storage[:3] == [0, 0, ""], storage
                assert storage[4] == f"{url}/kiosk/"
                assert storage[3] == 2, "the page never pushes history entries (about:blank, /kiosk/)"
                assert await context.cookies() == []
                await page.go_back()
                assert await kiosk.personal_leftovers(secrets) == []
                await page.go_forward()
                await kiosk.settled("login")
                assert await kiosk.personal_leftovers(secrets) == []
                assert kiosk.errors == []
                # The card read never reached the page: not in anything it sent or got from the bridge.
                for request in kiosk.requests:
                    assert resident["id_card_number"] not in (request.post_data or "")
                assert len(kiosk.bridge_logins) == 3  # no card, no face match, then the session
                assert all(resident["id_card_number"] not in body for body in kiosk.bridge_logins)
                assert "accessToken" in kiosk.bridge_logins[-1]
                logout = [r for r in kiosk.requests if r.url.endswith("/api/v1/auth/logout")]
                assert logout, "the wipe ends the session at the BFF too"
                ended = await logout[0].response()
                assert ended is not None and ended.status == 200, ended and await ended.text()
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        await sandbox.put("/booking/_control/settings", json={"clockOffsetS": 0})
        await api.aclose()
