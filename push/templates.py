"""Versioned texts: one `Template` per outbox topic (and case event), in zh and en.

A template turns a topic's payload into what each channel shows: the inbox title and body in the
resident's language, the deep link, a WeChat subscribe message (template id + keyword values that
obey WeChat's per-type rules) and an SMS (a template registered with the carrier + its variables,
each at most 35 characters, the whole text kept to one 70-character segment where the item name
can be shortened). None carries personal data: payloads hold case numbers and item names only.

Bump `version` when a text changes: every notification records the version it was rendered with.
A new topic plugs in by adding a template to `TEMPLATES` (a test renders every topic of
`push.topics.PAYLOADS`, so a topic without one fails there, not in a worker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

Lang = Literal["zh", "en"]
Category = Literal[
    "action_needed", "case_progress", "appointments", "payments", "delivery", "hotline", "other"
]
CATEGORIES: tuple[Category, ...] = (
    "action_needed",
    "case_progress",
    "appointments",
    "payments",
    "delivery",
    "hotline",
    "other",
)
# Categories whose messages always reach the inbox and ignore quiet hours (DOMAIN.md).
URGENT: frozenset[str] = frozenset({"action_needed"})
CHINA = timezone(timedelta(hours=8))
SMS_SIGN = "三湘政务"
SMS_SEGMENT = 70
SMS_PARAM_MAX = 35
# The texts of our templates registered with the SMS provider (the provider fills the variables).
SMS_TEXTS = {
    "SMS_460100001": "您申请的${item}（办件编号${caseNo}）需要补正材料，请于${deadline}前登录三湘政务小程序处理。",
    "SMS_460100002": "您申请的${item}（办件编号${caseNo}）当前状态：${status}。详情请登录三湘政务小程序查看。",
    "SMS_460100003": "您已成功预约${time}在${hall}办理${item}，预约号${ticket}，请携带有效身份证件按时到场。",
    "SMS_460100004": "温馨提醒：您预约的${item}将于明天${time}在${hall}办理，请按时到场；如需取消请提前在小程序中操作。",
}
# How long a resident is given to answer a 补正 request when the case system names no date.
SUPPLEMENT_DAYS = 20

STATUS_ZH = {
    "submitted": "已提交",
    "pre_accepted": "预受理",
    "accepted": "已受理",
    "not_accepted": "不予受理",
    "in_progress": "办理中",
    "awaiting_supplement": "待补正",
    "special_procedure": "特别程序",
    "concluded": "已办结",
    "delivering": "寄递中",
    "delivered": "已送达",
    "rated": "已评价",
}
STATUS_EN = {
    "submitted": "submitted",
    "pre_accepted": "pre-accepted",
    "accepted": "accepted",
    "not_accepted": "not accepted",
    "in_progress": "in progress",
    "awaiting_supplement": "awaiting documents",
    "special_procedure": "special procedure",
    "concluded": "concluded",
    "delivering": "being delivered",
    "delivered": "delivered",
    "rated": "rated",
}

PAYMENT_STATUS_ZH = {
    "created": "待支付",
    "paying": "支付中",
    "paid": "已支付",
    "closed": "已关闭",
    "failed": "支付失败",
    "refunding": "退款中",
    "refunded": "已退款",
    "partially_refunded": "部分退款",
}
PAYMENT_STATUS_EN = {
    "created": "awaiting payment",
    "paying": "being paid",
    "paid": "paid",
    "closed": "closed",
    "failed": "not paid",
    "refunding": "being refunded",
    "refunded": "refunded",
    "partially_refunded": "partly refunded",
}
DELIVERY_STATUS_ZH = {
    "created": "已交寄",
    "picked_up": "已揽收",
    "in_transit": "运输中",
    "out_for_delivery": "派送中",
    "delivered": "已签收",
    "failed": "投递失败",
    "returned": "已退回",
}
DELIVERY_STATUS_EN = {
    "created": "handed to the courier",
    "picked_up": "picked up",
    "in_transit": "in transit",
    "out_for_delivery": "out for delivery",
    "delivered": "delivered",
    "failed": "not delivered",
    "returned": "returned",
}

# 12345 steps (sandbox/hotline: accepted 受理 … closed 办结).
HOTLINE_STATUS_ZH = {
    "accepted": "已受理",
    "dispatched": "已派单",
    "in_progress": "办理中",
    "awaiting_info": "待补充信息",
    "supervised": "已督办",
    "feedback_given": "已答复待评价",
    "closed": "已办结",
}
MANDATE_EVENT_ZH = {
    "accepted": "已接受您的代办授权",
    "revoked": "的代办授权已结束",
    "used": "使用代办授权为您办理了业务",
}
MANDATE_EVENT_EN = {
    "accepted": "accepted your mandate",
    "revoked": "no longer holds your mandate",
    "used": "acted for you under your mandate",
}
HOTLINE_STATUS_EN = {
    "accepted": "accepted",
    "dispatched": "passed to the department",
    "in_progress": "being handled",
    "awaiting_info": "waiting for your information",
    "supervised": "under supervision for being late",
    "feedback_given": "answered, awaiting your rating",
    "closed": "closed",
}


@dataclass(frozen=True)
class Rendered:
    template: str
    version: int
    category: Category
    urgent: bool
    lang: Lang
    title: str
    body: str
    link: str  # the app's route, e.g. /cases/<id>
    wechat_template: str
    wechat_page: str
    wechat_data: dict[str, dict[str, str]]
    sms_template: str
    sms_params: dict[str, str]


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    category: Category
    title: Mapping[Lang, str]
    body: Mapping[Lang, str]
    link: str
    # Empty where no registered WeChat subscribe or SMS template fits: that channel is skipped.
    wechat_template: str = ""
    wechat_page: str = ""
    wechat_data: Callable[[dict[str, str]], dict[str, str]] = lambda f: {}
    sms_template: str = ""
    sms_params: Callable[[dict[str, str]], dict[str, str]] = lambda f: {}
    # How `status` reads in each language (statusZh / statusEn in the texts): case statuses unless
    # the topic has its own vocabulary.
    statuses: tuple[Mapping[str, str], Mapping[str, str]] = (STATUS_ZH, STATUS_EN)


def thing(text: str, limit: int = 20) -> str:
    """WeChat `thing`: at most 20 characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ascii_string(text: str, limit: int = 32) -> str:
    """WeChat `character_string`: printable ASCII, at most 32."""
    cleaned = "".join(c for c in text if "!" <= c <= "~")
    return (cleaned or "-")[:limit]


def china_time(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(CHINA)


def _fields(
    payload: Mapping[str, Any], statuses: tuple[Mapping[str, str], Mapping[str, str]]
) -> dict[str, str]:
    """The payload's values as display strings, plus derived ones the texts use."""
    out = {k: "" if v is None else str(v) for k, v in payload.items()}
    if isinstance(payload.get("amountFen"), int):
        out["amountYuan"] = f"{payload['amountFen'] / 100:.2f}"
    if "waybillNo" in out and not out["waybillNo"]:
        out["waybillNo"] = "-"
    for key in ("occurredAt", "startsAt", "expiresAt"):
        if out.get(key):
            at = china_time(out[key])
            out[key + "Text"] = at.strftime("%Y-%m-%d %H:%M")
            out[key + "Clock"] = at.strftime("%H:%M")
            out[key + "Date"] = at.strftime("%Y-%m-%d")
    if out.get("occurredAt"):
        out["deadline"] = (china_time(out["occurredAt"]) + timedelta(days=SUPPLEMENT_DAYS)).strftime(
            "%Y-%m-%d"
        )
    if "ticketNo" in out:
        # 12345 tickets: who handles it and by when, where known.
        department, due = out.get("departmentName", ""), out.get("deadlineAt", "")
        due_text = china_time(due).strftime("%Y-%m-%d %H:%M") if due else ""
        out["departmentText"] = (f"，承办单位：{department}" if department else "") + (
            f"，办理时限：{due_text}" if due_text and out.get("event") == "dispatched" else ""
        )
        out["departmentTextEn"] = (f" ({department})" if department else "") + (
            f", due {due_text}" if due_text and out.get("event") == "dispatched" else ""
        )
    if out.get("status"):
        out["statusZh"] = statuses[0].get(out["status"], "有更新")
        out["statusEn"] = statuses[1].get(out["status"], "updated")
    return out


def _case_data(f: dict[str, str]) -> dict[str, str]:
    return {
        "thing1": thing(f["itemName"]),
        "character_string2": ascii_string(f["projectNo"]),
        "phrase3": f["statusZh"][:5],
        "time4": f["occurredAtText"],
    }


def _booking_data(f: dict[str, str]) -> dict[str, str]:
    return {
        "thing1": thing(f"事项{f['itemCode']}"),
        "thing2": thing(f["hallId"]),
        "time3": f["startsAtText"],
        "character_string4": ascii_string(f["bookingNo"]),
    }


def _booking_sms(f: dict[str, str]) -> dict[str, str]:
    return {
        "time": f["startsAtText"],
        "hall": f["hallId"],
        "item": f"事项{f['itemCode']}",
        "ticket": f["bookingNo"] or "-",
    }


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in [
        Template(
            name="case.supplement_requested",
            version=1,
            category="action_needed",
            title={"zh": "请补正材料", "en": "Documents needed"},
            body={
                "zh": "您申请的{itemName}（办件编号{projectNo}）需要补正材料，请于{deadline}前处理。",
                "en": "Your application {projectNo} ({itemName}) needs more documents; please reply by {deadline}.",
            },
            link="/cases/{caseId}",
            wechat_template="sxSupplement-0003-OneTimeTemplateBuZheng003",
            wechat_page="pages/cases/detail?id={caseId}",
            wechat_data=lambda f: {
                "thing1": thing(f["itemName"]),
                "character_string2": ascii_string(f["projectNo"]),
                "thing3": "请登录小程序查看补正要求",
                "date4": f["deadline"],
            },
            sms_template="SMS_460100001",
            sms_params=lambda f: {"item": f["itemName"], "caseNo": f["projectNo"], "deadline": f["deadline"]},
        ),
        Template(
            name="case.changed",
            version=1,
            category="case_progress",
            title={"zh": "办件进度更新", "en": "Application update"},
            body={
                "zh": "您申请的{itemName}（办件编号{projectNo}）当前状态：{statusZh}。",
                "en": "Your application {projectNo} ({itemName}) is now {statusEn}.",
            },
            link="/cases/{caseId}",
            wechat_template="sxCaseProgress-0001-LongTermGovServiceTmpl01",
            wechat_page="pages/cases/detail?id={caseId}",
            wechat_data=_case_data,
            sms_template="SMS_460100002",
            sms_params=lambda f: {"item": f["itemName"], "caseNo": f["projectNo"], "status": f["statusZh"]},
        ),
        Template(
            name="appointment.booked",
            version=1,
            category="appointments",
            title={"zh": "预约已确认", "en": "Appointment confirmed"},
            body={
                "zh": "您的预约（预约号{bookingNo}）已确认：{startsAtText}，请携带有效身份证件按时到场。",
                "en": "Your appointment {bookingNo} is confirmed for {startsAtText}; bring your ID card.",
            },
            link="/appointments/{appointmentId}",
            wechat_template="sxBooking-0005-OneTimeTemplateAppointment05",
            wechat_page="pages/appointments/detail?id={appointmentId}",
            wechat_data=_booking_data,
            sms_template="SMS_460100003",
            sms_params=_booking_sms,
        ),
        Template(
            name="appointment.rescheduled",
            version=1,
            category="appointments",
            title={"zh": "预约已改期", "en": "Appointment moved"},
            body={
                "zh": "您的预约已改至{startsAtText}（预约号{bookingNo}），请按时到场。",
                "en": "Your appointment is moved to {startsAtText} (booking {bookingNo}).",
            },
            link="/appointments/{appointmentId}",
            wechat_template="sxBooking-0005-OneTimeTemplateAppointment05",
            wechat_page="pages/appointments/detail?id={appointmentId}",
            wechat_data=_booking_data,
            sms_template="SMS_460100003",
            sms_params=_booking_sms,
        ),
        Template(
            # No registered WeChat or SMS template fits a cancellation: inbox and app push only.
            name="appointment.cancelled",
            version=1,
            category="appointments",
            title={"zh": "预约已取消", "en": "Appointment cancelled"},
            body={
                "zh": "您{startsAtText}的预约（预约号{bookingNo}）已取消。",
                "en": "Your appointment of {startsAtText} (booking {bookingNo}) is cancelled.",
            },
            link="/appointments/{appointmentId}",
        ),
        Template(
            name="appointment.reminder",
            version=1,
            category="appointments",
            title={"zh": "明天有预约", "en": "Appointment tomorrow"},
            body={
                "zh": "您预约的事项将于明天{startsAtClock}办理（预约号{bookingNo}），请按时到场。",
                "en": "Reminder: your appointment {bookingNo} is tomorrow at {startsAtClock}.",
            },
            link="/appointments/{appointmentId}",
            wechat_template="sxReminder-0006-OneTimeTemplateTomorrow0006",
            wechat_page="pages/appointments/detail?id={appointmentId}",
            wechat_data=lambda f: {
                "thing1": thing(f"事项{f['itemCode']}"),
                "time2": f["startsAtText"],
                "thing3": "请携带有效身份证件按时到场",
            },
            sms_template="SMS_460100004",
            sms_params=lambda f: {
                "item": f"事项{f['itemCode']}",
                "time": f["startsAtClock"],
                "hall": f["hallId"],
            },
        ),
        Template(
            # Time-limited and the resident must act: action needed (it passes quiet hours). No
            # registered WeChat or SMS template fits an offer: inbox and app push only.
            name="appointment.waitlist_offer",
            version=1,
            category="action_needed",
            title={"zh": "排队有号了", "en": "A seat is free for you"},
            body={
                "zh": "您排队等候的事项{itemCode}有空位了：{startsAtText}。号源为您保留至{expiresAtClock}，请在此前确认预约，逾时将顺延给下一位。",
                "en": "A seat is free for you: {startsAtText} (item {itemCode}). It is held until {expiresAtClock}; book it before then or it passes to the next in line.",
            },
            link="/appointments/waitlist/{entryId}",
        ),
        Template(
            # No registered WeChat or SMS template fits a licence's renewal: inbox and app push only.
            name="licence.expiring",
            version=1,
            category="other",
            title={"zh": "证照即将到期", "en": "Licence expiring soon"},
            body={
                "zh": "您的{typeName}将于{validTo}到期（还有{daysLeft}天），请及时办理换领。",
                "en": "Your {typeName} expires on {validTo} (in {daysLeft} days); renew it in time.",
            },
            link="/licences/{licenceId}",
        ),
        Template(
            # The registered fee template (缴费通知) asks for a payment; none confirms one, and no
            # SMS template fits either: inbox and app push only.
            name="payment.changed",
            version=1,
            category="payments",
            title={"zh": "缴费状态更新", "en": "Payment update"},
            body={
                "zh": "您的办件缴费{amountYuan}元：{statusZh}。",
                "en": "Your fee of CNY {amountYuan} is {statusEn}.",
            },
            link="/payments/{paymentId}",
            statuses=(PAYMENT_STATUS_ZH, PAYMENT_STATUS_EN),
        ),
        Template(
            # 证照寄递通知 is a long-term template; no SMS template is registered for shipments.
            name="delivery.changed",
            version=1,
            category="delivery",
            title={"zh": "办理结果寄递", "en": "Your result is on its way"},
            body={
                "zh": "您申请的{itemName}（办件编号{projectNo}）的办理结果{statusZh}，运单号{waybillNo}。",
                "en": "The result of {projectNo} ({itemName}) is {statusEn}; waybill {waybillNo}.",
            },
            link="/deliveries/{deliveryId}",
            wechat_template="sxShipment-0002-LongTermGovServiceTemplate2",
            wechat_page="pages/deliveries/detail?id={deliveryId}",
            wechat_data=lambda f: {
                "thing1": thing(f["itemName"]),
                "character_string2": ascii_string(f["waybillNo"]),
                "phrase3": f["statusZh"][:5],
            },
            statuses=(DELIVERY_STATUS_ZH, DELIVERY_STATUS_EN),
        ),
        Template(
            # No registered WeChat subscribe or SMS template fits a 12345 step: inbox and app push.
            name="hotline.changed",
            version=1,
            category="hotline",
            title={"zh": "12345 工单进度", "en": "12345 ticket update"},
            body={
                "zh": "您的12345工单（{ticketNo}）{statusZh}{departmentText}。",
                "en": "Your 12345 ticket {ticketNo} is {statusEn}{departmentTextEn}.",
            },
            link="/hotline/tickets/{ticketId}",
            statuses=(HOTLINE_STATUS_ZH, HOTLINE_STATUS_EN),
        ),
        Template(
            # Told in the inbox and by app push: no registered WeChat or SMS template fits.
            name="mandate.changed",
            version=1,
            category="other",
            title={"zh": "代办授权提醒", "en": "Your mandate"},
            body={
                "zh": "代办人{agentName}{statusZh}（{occurredAtText}）。如非本人授权，请立即在“我的授权”中撤销。",
                "en": "Your agent {agentName} {statusEn} ({occurredAtText}). Not you? Revoke it under My mandates.",
            },
            link="/me/mandates/{mandateId}",
            statuses=(MANDATE_EVENT_ZH, MANDATE_EVENT_EN),
        ),
        Template(
            name="hotline.info_requested",
            version=1,
            category="action_needed",
            title={"zh": "12345 工单需要补充信息", "en": "12345 needs more information"},
            body={
                "zh": "您的12345工单（{ticketNo}）需要补充信息，请登录查看并尽快回复，以免影响办理。",
                "en": "Your 12345 ticket {ticketNo} needs more information from you; please reply soon.",
            },
            link="/hotline/tickets/{ticketId}",
            statuses=(HOTLINE_STATUS_ZH, HOTLINE_STATUS_EN),
        ),
    ]
}


def template_for(topic: str, payload: Mapping[str, Any]) -> Template:
    """The template of a topic; case changes pick theirs by event (a 补正 request is action needed)."""
    if topic == "case.changed" and payload.get("event") == "supplement_requested":
        return TEMPLATES["case.supplement_requested"]
    if topic == "hotline.changed" and payload.get("event") == "info_requested":
        return TEMPLATES["hotline.info_requested"]
    if topic == "appointment.changed":
        return TEMPLATES[f"appointment.{payload.get('event', 'booked')}"]
    if topic in TEMPLATES:
        return TEMPLATES[topic]
    raise KeyError(f"no template for topic {topic}")


def sms_text(code: str, params: Mapping[str, str]) -> str:
    text = SMS_TEXTS[code]
    for key, value in params.items():
        text = text.replace("${" + key + "}", value)
    return f"【{SMS_SIGN}】{text}"


def fit_sms(code: str, params: dict[str, str], shorten: str = "item") -> dict[str, str]:
    """Each variable at most 35 characters; the shortenable one cut so the text stays one segment."""
    fitted = {k: v if len(v) <= SMS_PARAM_MAX else v[: SMS_PARAM_MAX - 1] + "…" for k, v in params.items()}
    over = len(sms_text(code, fitted)) - SMS_SEGMENT
    if over > 0 and shorten in fitted:
        value = fitted[shorten]
        keep = max(6, len(value) - over - 1)
        if keep < len(value):
            fitted[shorten] = value[:keep] + "…"
    return fitted


def render(topic: str, payload: Mapping[str, Any], lang: Lang) -> Rendered:
    template = template_for(topic, payload)
    f = _fields(payload, template.statuses)
    return Rendered(
        template=template.name,
        version=template.version,
        category=template.category,
        urgent=template.category in URGENT,
        lang=lang,
        title=template.title[lang],
        body=template.body[lang].format(**f),
        link=template.link.format(**f),
        wechat_template=template.wechat_template,
        wechat_page=template.wechat_page.format(**f),
        wechat_data={key: {"value": value} for key, value in template.wechat_data(f).items()},
        sms_template=template.sms_template,
        sms_params=fit_sms(template.sms_template, template.sms_params(f)) if template.sms_template else {},
    )
