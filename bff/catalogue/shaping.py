"""Turn the item library's entry into the phone-shaped guide."""

from __future__ import annotations

from adapters.catalogue.schemas import ItemEntry
from bff.catalogue.schemas import (
    Channels,
    FaqOut,
    FeeOut,
    Guide,
    HallOut,
    MaterialOut,
    StepOut,
    TimeLimits,
)


def shape_guide(entry: ItemEntry) -> Guide:
    # Required materials first, and among them those the resident must bring before those an
    # e-licence covers: that is the order a person packs their bag in.
    materials = sorted(entry.materials, key=lambda m: (not m.required, m.elicence_type is not None))
    return Guide(
        code=entry.catalog_code,
        task_code=entry.task_code,
        version=entry.task_version,
        name=entry.name,
        region_code=entry.region_code,
        department=entry.department,
        audience=entry.audience,
        theme=entry.theme,
        kind=entry.kind,
        conditions=entry.accept_conditions,
        legal_basis=entry.legal_basis,
        materials=[
            MaterialOut(
                name=m.name,
                required=m.required,
                form=m.form,
                count=m.count,
                format=m.format,
                source=m.source,
                replaced_by_elicence=m.elicence_type is not None,
                elicence_type=m.elicence_type,
                notes=m.notes,
                has_blank_form=m.blank_form,
                has_sample=m.sample,
            )
            for m in materials
        ],
        steps=[StepOut(name=s.name, description=s.description, days=s.days) for s in entry.steps],
        time_limits=TimeLimits(
            statutory_working_days=entry.anticipate_day, promised_working_days=entry.promise_day
        ),
        fees=[
            FeeOut(name=f.name, amount_fen=f.standard_fen, basis=f.basis, waivable=f.waivable)
            for f in entry.fees
        ],
        free=all(f.standard_fen == 0 for f in entry.fees),
        halls=[
            HallOut(
                id=h.id,
                name=h.name,
                region_code=h.region_code,
                address=h.address,
                hours=h.hours,
                phone=h.phone,
                lat=h.lat,
                lng=h.lng,
            )
            for h in entry.halls
        ],
        channels=Channels(
            online=entry.is_online,
            online_depth=entry.online_handle_depth,
            bookable=entry.is_schedule,
            mailable=entry.is_express,
            pay_online=entry.is_pay_online,
            kiosk=entry.is_service_terminals,
            in_hall=entry.is_entry_center,
            visits_needed=entry.limit_scene_num,
            tongban_range=entry.tongban_range,
        ),
        faq=[FaqOut(question=f.question, answer=f.answer) for f in entry.faq],
        supervision=entry.supervision,
        demo_data=entry.demo,
    )
