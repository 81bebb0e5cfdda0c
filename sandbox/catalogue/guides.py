"""Deterministic, realistic demo guides for the items in data/items.csv.

Everything produced here is demo data (`demo: true`): plausible wording modelled on published
Hunan guides, not legal advice.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

ITEMS_CSV = Path(__file__).parent / "data" / "items.csv"
PROVINCE = "430000"

KIND_CODES = {
    "行政许可": "01",
    "行政处罚": "02",
    "行政强制": "03",
    "行政征收": "04",
    "行政给付": "05",
    "行政检查": "06",
    "行政确认": "07",
    "行政奖励": "08",
    "行政裁决": "09",
    "其他行政权力": "10",
    "公共服务": "20",
}

ID_CARD = {
    "name": "居民身份证",
    "required": True,
    "form": "原件",
    "count": 1,
    "format": "纸质或电子",
    "source": "公安机关核发",
    "elicence_type": "11100000000000000001",
    "notes": "可使用电子身份证或“湘易办”亮证代替",
}
HOUSEHOLD = {
    "name": "居民户口簿",
    "required": True,
    "form": "原件",
    "count": 1,
    "format": "纸质或电子",
    "source": "公安机关核发",
    "elicence_type": "11100000000000000002",
}
LICENCE = {
    "name": "营业执照",
    "required": True,
    "form": "原件",
    "count": 1,
    "format": "纸质或电子",
    "source": "市场监督管理部门核发",
    "elicence_type": "11100000000000000010",
    "notes": "电子营业执照可直接调用",
}
APPLICATION_FORM = {
    "name": "申请表",
    "required": True,
    "form": "原件",
    "count": 1,
    "format": "纸质",
    "source": "申请人自备（窗口或网上下载）",
    "blank_form": True,
    "sample": True,
    "notes": "申请人签字；委托办理的由受托人签字",
}
POWER_OF_ATTORNEY = {
    "name": "授权委托书及受托人身份证明",
    "required": False,
    "form": "原件",
    "count": 1,
    "format": "纸质",
    "source": "申请人自备",
    "blank_form": True,
    "notes": "委托他人办理时提供",
}
PHOTO = {
    "name": "近期免冠证件照片",
    "required": True,
    "form": "原件",
    "count": 2,
    "format": "纸质或电子",
    "source": "申请人自备",
    "notes": "白色背景，符合 GA 461 标准；可在大厅自助拍照",
}
MARRIAGE = {
    "name": "结婚证",
    "required": True,
    "form": "原件",
    "count": 1,
    "format": "纸质或电子",
    "source": "民政部门核发",
    "elicence_type": "11100000000000000005",
}
PROPERTY = {
    "name": "不动产权证书",
    "required": True,
    "form": "原件",
    "count": 1,
    "format": "纸质或电子",
    "source": "不动产登记机构核发",
    "elicence_type": "11100000000000000020",
}
BIRTH_CERT = {
    "name": "出生医学证明",
    "required": True,
    "form": "原件",
    "count": 1,
    "format": "纸质或电子",
    "source": "助产机构签发",
    "elicence_type": "11100000000000000030",
}
SOCIAL_CARD = {
    "name": "社会保障卡",
    "required": False,
    "form": "原件",
    "count": 1,
    "format": "纸质或电子",
    "source": "人力资源社会保障部门核发",
    "elicence_type": "11100000000000000040",
}

# Extra materials by theme; the item's own name decides the rest.
THEME_MATERIALS: dict[str, list[dict[str, Any]]] = {
    "户籍办理": [HOUSEHOLD],
    "生育收养": [HOUSEHOLD, MARRIAGE],
    "婚姻登记": [HOUSEHOLD, PHOTO],
    "证件办理": [PHOTO],
    "出境入境": [PHOTO],
    "交通出行": [PHOTO],
    "社会保障": [SOCIAL_CARD],
    "医疗卫生": [SOCIAL_CARD],
    "住房保障": [PROPERTY],
    "抵押质押": [PROPERTY],
    "设立变更": [
        {
            "name": "公司章程",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质或电子",
            "source": "申请人自备",
            "sample": True,
        }
    ],
    "准营准办": [LICENCE],
    "税收财务": [LICENCE],
    "投资审批": [
        LICENCE,
        {
            "name": "项目申请报告或备案信息表",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "电子",
            "source": "申请人自备",
            "sample": True,
        },
    ],
    "环境保护": [
        LICENCE,
        {
            "name": "环境影响报告书（表）",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "电子",
            "source": "具备能力的技术单位编制",
        },
    ],
}

SPECIFIC_MATERIALS: dict[str, list[dict[str, Any]]] = {
    "出生登记": [BIRTH_CERT, MARRIAGE],
    "户口迁入": [
        {
            "name": "准予迁入证明或迁入地合法稳定住所证明",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质",
            "source": "迁入地公安机关或不动产登记机构",
        }
    ],
    "机动车驾驶证有效期满换证": [
        {
            "name": "机动车驾驶证",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质或电子",
            "source": "公安机关交通管理部门核发",
            "elicence_type": "11100000000000000050",
        },
        {
            "name": "身体条件证明",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质或电子",
            "source": "县级以上医疗机构出具",
            "notes": "可通过“交管12123”上传电子体检信息",
        },
    ],
    "住房公积金提取": [
        {
            "name": "提取原因证明（购房合同、租赁备案、退休证明等）",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质或电子",
            "source": "相关部门出具",
        },
        {
            "name": "本人银行借记卡",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质",
            "source": "开户银行",
        },
    ],
    "不动产转移登记": [
        PROPERTY,
        {
            "name": "不动产买卖合同",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质或电子",
            "source": "网签备案系统生成",
        },
        {
            "name": "完税凭证",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "电子",
            "source": "税务部门出具",
            "elicence_type": "11100000000000000060",
        },
    ],
    "结婚登记": [
        {
            "name": "本人无配偶以及与对方当事人没有直系血亲和三代以内旁系血亲关系的签字声明",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质",
            "source": "登记机关现场签署",
        }
    ],
    "企业设立登记": [
        {
            "name": "全体股东（发起人）主体资格证明",
            "required": True,
            "form": "复印件",
            "count": 1,
            "format": "纸质或电子",
            "source": "申请人自备",
        },
        {
            "name": "住所（经营场所）使用证明",
            "required": True,
            "form": "原件",
            "count": 1,
            "format": "纸质或电子",
            "source": "申请人自备",
            "notes": "实行住所申报承诺制的地区可填写承诺书代替",
        },
    ],
}

FEES: dict[str, list[dict[str, Any]]] = {
    "普通护照签发": [
        {"name": "护照工本费", "standard_fen": 12000, "basis": "发改价格〔2017〕1186号", "waivable": False}
    ],
    "往来港澳通行证及签注签发": [
        {"name": "通行证工本费", "standard_fen": 6000, "basis": "发改价格〔2019〕114号", "waivable": False},
        {
            "name": "签注费（一次有效）",
            "standard_fen": 1500,
            "basis": "发改价格〔2019〕114号",
            "waivable": False,
        },
    ],
    "往来台湾通行证及签注签发": [
        {"name": "通行证工本费", "standard_fen": 6000, "basis": "发改价格〔2019〕114号", "waivable": False}
    ],
    "居民身份证换领": [
        {
            "name": "居民身份证工本费",
            "standard_fen": 2000,
            "basis": "发改价格〔2003〕2322号",
            "waivable": True,
        }
    ],
    "居民身份证补领": [
        {
            "name": "居民身份证工本费",
            "standard_fen": 4000,
            "basis": "发改价格〔2003〕2322号",
            "waivable": False,
        }
    ],
    "临时居民身份证申领": [
        {
            "name": "临时居民身份证工本费",
            "standard_fen": 1000,
            "basis": "发改价格〔2003〕2322号",
            "waivable": False,
        }
    ],
    "机动车驾驶证补领": [
        {"name": "驾驶证工本费", "standard_fen": 1000, "basis": "湘发改价费〔2017〕428号", "waivable": False}
    ],
    "机动车注册登记": [
        {"name": "号牌工本费", "standard_fen": 10000, "basis": "湘发改价费〔2017〕428号", "waivable": False}
    ],
    "不动产首次登记": [
        {"name": "不动产登记费（住宅）", "standard_fen": 8000, "basis": "财税〔2016〕79号", "waivable": True}
    ],
    "不动产转移登记": [
        {"name": "不动产登记费（住宅）", "standard_fen": 8000, "basis": "财税〔2016〕79号", "waivable": True}
    ],
    "不动产抵押登记": [
        {"name": "不动产登记费（住宅）", "standard_fen": 8000, "basis": "财税〔2016〕79号", "waivable": True}
    ],
    "公证事项办理": [
        {"name": "公证费", "standard_fen": 20000, "basis": "湘发改价费〔2017〕512号", "waivable": True}
    ],
    "普通话水平测试报名": [
        {"name": "测试费", "standard_fen": 5000, "basis": "湘价费〔2012〕1号", "waivable": False}
    ],
}

PROVINCE_HALL = {
    "id": "H430000-01",
    "name": "湖南省政务服务中心",
    "region_code": PROVINCE,
    "address": "长沙市岳麓区岳麓大道218号",
    "hours": "周一至周五 09:00-12:00, 13:30-17:00（法定节假日除外）",
    "phone": "0731-12345",
    "lat": 28.2127,
    "lng": 112.9452,
}


def _digest(*parts: str) -> int:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:8], 16)


def read_items() -> list[dict[str, str]]:
    with ITEMS_CSV.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def catalog_code(index: int, row: dict[str, str]) -> str:
    """12-character 基本编码: kind (2) + department (3) + sequence (4) + sub-item (3)."""
    dept = _digest(row["department"]) % 1000
    return f"{KIND_CODES.get(row['kind'], '99')}{dept:03d}{index + 1:04d}000"


def build_guide(
    index: int, row: dict[str, str], region_code: str = PROVINCE, version: int = 1
) -> dict[str, Any]:
    name = row["name"]
    seed = _digest(name, region_code)
    individual = row["audience"] == "个人"
    materials: list[dict[str, Any]] = [dict(APPLICATION_FORM)]
    materials.append(dict(ID_CARD) if individual else {**LICENCE, "name": "营业执照或统一社会信用代码证明"})
    materials += [dict(m) for m in THEME_MATERIALS.get(row["topic"], [])]
    materials += [dict(m) for m in SPECIFIC_MATERIALS.get(name, [])]
    materials.append(dict(POWER_OF_ATTORNEY))
    seen: set[str] = set()
    unique = []
    for m in materials:
        if m["name"] not in seen:
            seen.add(m["name"])
            unique.append(
                {
                    "elicence_type": None,
                    "notes": None,
                    "blank_form": False,
                    "sample": False,
                    **m,
                }
            )
    licensing = row["kind"] == "行政许可"
    anticipate = 20 if licensing else (30 if row["kind"] == "行政确认" else 15)
    promise = max(1, anticipate // (2 + seed % 3)) if seed % 5 else 0  # 0 = 即办
    online = seed % 4 != 0
    depth = 4 if online and seed % 3 == 0 else (3 if online else 1)
    steps = [
        {"name": "申请", "description": "通过“湘易办”或到大厅窗口提交申请材料", "days": 0},
        {
            "name": "受理",
            "description": "窗口人员审查材料是否齐全、符合法定形式",
            "days": 0 if promise == 0 else 1,
        },
    ]
    if licensing or promise > 3:
        steps.append(
            {"name": "审核", "description": f"{row['department']}业务处室审核", "days": max(0, promise - 2)}
        )
    steps.append(
        {"name": "决定", "description": "作出准予或不予决定并告知申请人", "days": 1 if promise else 0}
    )
    steps.append({"name": "送达", "description": "窗口领取或免费邮寄送达", "days": 0})
    return {
        "catalog_code": catalog_code(index, row),
        "task_code": f"11{region_code}{_digest(row['department']) % 10**8:08d}{catalog_code(index, row)}",
        "task_version": version,
        "name": name,
        "region_code": region_code,
        "department": f"湖南省{row['department']}" if region_code == PROVINCE else row["department"],
        "audience": row["audience"],
        "theme": row["topic"],
        "kind": row["kind"],
        "status": "active",
        "updated_at": "2026-11-01T00:00:00+00:00",
        "legal_basis": [
            f"《{row['department'].removesuffix('厅').removesuffix('局')}领域相关法律法规》（示例数据）"
        ],
        "accept_conditions": [
            "申请人具有完全民事行为能力，或由监护人代为申请" if individual else "申请单位依法成立并有效存续",
            "申请材料齐全、符合法定形式",
            f"符合办理“{name}”的法定条件",
        ],
        "materials": unique,
        "steps": steps,
        "anticipate_day": anticipate,
        "promise_day": promise,
        "fees": FEES.get(name, []),
        "halls": [PROVINCE_HALL],
        "limit_scene_num": 0 if depth == 4 else 1,
        "is_online": online,
        "online_handle_depth": depth,
        "is_schedule": row["kind"] != "行政征收",
        "is_express": seed % 2 == 0,
        "is_pay_online": bool(FEES.get(name)) and online,
        "is_service_terminals": individual and seed % 3 != 1,
        "is_entry_center": True,
        "tongban_range": ["全省通办", "跨省通办", "全市通办"][seed % 3],
        "faq": [
            {
                "question": f"办理“{name}”需要本人到场吗？",
                "answer": "网上可办的可全程网办；需要到场的，可委托他人持授权委托书办理（法律另有规定的除外）。",
            },
            {
                "question": "办理进度在哪里查询？",
                "answer": "在“湘易办”App 或小程序“我的办件”中查看，状态变化会通过消息通知您。",
            },
        ],
        "supervision": "投诉监督：12345 政务服务便民热线",
        "demo": True,
    }
