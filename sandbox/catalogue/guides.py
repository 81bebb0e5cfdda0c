"""Deterministic, realistic demo guides for the items in data/items.csv, for every region.

Everything produced here is demo data (`demo: true`): plausible wording modelled on published
Hunan guides, not legal advice. The generator is deterministic (every variation comes from a hash of
the item, scenario and region) so two seeds of the same scale produce the same library.

Shape of the library: every item (主项) has handling items (业务办理项, one per scenario such as
新办/变更/注销 or 本人申请/委托代办); the province publishes the standard for all of them, and each
city/prefecture and county-level unit implements those its departments handle (实施清单).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox.catalogue.regions import PROVINCE, Region, hunan_regions

ITEMS_CSV = Path(__file__).parent / "data" / "items.csv"
SEEDED_AT = "2026-11-01T00:00:00+00:00"

# demo: the province, Changsha with two of its districts, Xiangxi with its capital. Enough for
# "implemented in your region first" to mean something, small enough for every test session.
DEMO_REGIONS = ("430000", "430100", "430102", "430104", "433100", "433101")

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

# 业务办理项 by kind of item; a few high-frequency items have their real-world scenarios instead.
SCENARIOS_BY_KIND: dict[str, list[str]] = {
    "行政许可": ["新办", "变更", "延续", "注销", "补证", "迁移", "委托代办"],
    "行政确认": ["本人申请", "监护人代为申请", "委托代理人申请", "异地申请", "容缺受理", "网上申请"],
    "公共服务": ["窗口办理", "网上办理", "自助终端办理", "邮寄办理", "跨省通办", "委托代办"],
    "行政给付": ["首次申请", "复核", "待遇变更", "停发后恢复", "异地申请", "委托代领"],
    "行政征收": ["按期申报", "更正申报", "逾期申报", "网上申报", "委托代理申报", "窗口缴纳"],
    "行政处罚": ["本人处理", "委托处理", "网上处理", "异地处理", "申请分期缴纳罚款", "申请陈述申辩"],
    "其他行政权力": ["首次办理", "变更", "注销", "补办", "网上办理", "委托代办"],
}
SPECIFIC_SCENARIOS: dict[str, list[str]] = {
    "出生登记": [
        "婚内生育",
        "非婚生育",
        "国外出生回国",
        "超过一年补报",
        "父母一方为外籍",
        "收养",
        "跨省通办",
    ],
    "户口迁入": ["投靠直系亲属", "购房落户", "人才引进", "大中专院校毕业生", "退役军人", "随迁子女"],
    "不动产转移登记": ["买卖", "继承", "赠与", "夫妻间变更", "司法判决", "存量房带押过户", "新建商品房"],
    "住房公积金提取": ["购买自住住房", "偿还住房贷款", "租房", "离退休", "大病医疗", "出境定居", "离职"],
    "结婚登记": ["内地居民", "涉港澳台居民", "涉外", "华侨", "预约办理", "颁证仪式"],
    "居民身份证换领": ["有效期满", "登记项目变更", "证件损坏", "异地换领", "未成年人", "加急"],
    "企业设立登记": [
        "有限责任公司",
        "股份有限公司",
        "个人独资企业",
        "合伙企业",
        "分公司",
        "外商投资企业",
        "一网通办",
    ],
    "职工正常退休申请": ["企业职工", "灵活就业人员", "特殊工种提前退休", "病退", "延迟退休", "异地退休"],
}

# Which levels implement an item (besides the province, which publishes the standard for all).
CITY_ONLY_DEPARTMENTS = frozenset(
    {"住房公积金管理中心", "药品监督管理局", "应急管理厅", "商务厅", "海关", "知识产权局", "生态环境厅"}
)
PROVINCE_AND_CITY_ITEMS = frozenset(
    {"工业产品生产许可证核发", "建筑业企业资质核准", "建设项目用地预审与选址意见书核发"}
)
# Each county leaves a few items to its city (deterministically): one in this many.
COUNTY_GAP = 19

LOCAL_DEPARTMENT = {
    "公安厅": "公安局",
    "人力资源和社会保障厅": "人力资源和社会保障局",
    "自然资源厅": "自然资源和规划局",
    "住房和城乡建设厅": "住房和城乡建设局",
    "民政厅": "民政局",
    "教育厅": "教育局",
    "税务局": "税务局",
    "药品监督管理局": "市场监督管理局",
    "发展和改革委员会": "发展和改革局",
    "生态环境厅": "生态环境局",
    "应急管理厅": "应急管理局",
    "消防救援总队": "消防救援支队",
    "交通运输厅": "交通运输局",
    "文化和旅游厅": "文化旅游广电局",
    "司法厅": "司法局",
    "退役军人事务厅": "退役军人事务局",
    "农业农村厅": "农业农村局",
    "水利厅": "水利局",
    "商务厅": "商务局",
    "知识产权局": "市场监督管理局（知识产权局）",
}

SCENARIO_MATERIALS: dict[str, dict[str, Any]] = {
    "变更": {
        "name": "变更事项的证明材料",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质或电子",
        "source": "申请人自备",
    },
    "延续": {
        "name": "原许可证件",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质或电子",
        "source": "本部门核发",
        "elicence_type": "11100000000000000099",
    },
    "注销": {
        "name": "原证件（证书）正副本",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质",
        "source": "本部门核发",
        "notes": "遗失的可在线声明作废",
    },
    "补证": {
        "name": "遗失声明",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "电子",
        "source": "在“湘易办”在线声明",
        "notes": "无需登报",
    },
    "补办": {
        "name": "遗失声明",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "电子",
        "source": "在“湘易办”在线声明",
        "notes": "无需登报",
    },
    "监护人代为申请": {
        "name": "监护关系证明",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质或电子",
        "source": "出生医学证明或户口簿",
        "elicence_type": "11100000000000000002",
    },
    "异地申请": {
        "name": "居住证或就业、就学证明",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质或电子",
        "source": "居住地公安机关或单位出具",
        "elicence_type": "11100000000000000003",
    },
    "跨省通办": {
        "name": "居住证或就业、就学证明",
        "required": False,
        "form": "原件",
        "count": 1,
        "format": "纸质或电子",
        "source": "居住地公安机关或单位出具",
    },
    "继承": {
        "name": "继承权公证书或生效法律文书",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质",
        "source": "公证机构或人民法院出具",
    },
    "赠与": {
        "name": "赠与合同",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质",
        "source": "申请人自备",
        "sample": True,
    },
    "租房": {
        "name": "房屋租赁合同或租赁备案证明",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质或电子",
        "source": "住房租赁备案系统",
        "elicence_type": "11100000000000000061",
    },
    "离退休": {
        "name": "退休证明",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质或电子",
        "source": "人力资源社会保障部门",
        "elicence_type": "11100000000000000041",
    },
    "涉外": {
        "name": "护照或国际旅行证件",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "纸质",
        "source": "外方当事人自备",
    },
    "灵活就业人员": {
        "name": "个人缴费凭证",
        "required": True,
        "form": "原件",
        "count": 1,
        "format": "电子",
        "source": "税务部门出具",
        "elicence_type": "11100000000000000060",
    },
}
DELEGATED = ("委托代办", "委托代理人申请", "委托代领", "委托处理", "委托代理申报")

GENERIC_FAQ = [
    (
        "办理需要本人到场吗？",
        "网上可办的可全程网办；需要到场的，可委托他人持授权委托书办理（法律另有规定的除外）。",
    ),
    ("办理进度在哪里查询？", "在“湘易办”App 或小程序“我的办件”中查看，状态变化会通过消息通知您。"),
    ("材料不齐可以先受理吗？", "实行容缺受理的，次要材料可在 5 个工作日内补齐，逾期未补齐的按不予受理处理。"),
    ("可以邮寄送达结果吗？", "支持免费邮寄的事项，提交申请时选择“邮寄送达”并填写收件地址即可。"),
    ("电子证照可以代替纸质材料吗？", "标注“可用电子证照”的材料，经您授权后由系统调取，无需再提交纸质件。"),
    ("周末可以办理吗？", "部分大厅实行周六上午“不打烊”服务，具体以所在大厅公告为准。"),
    ("对办理结果有异议怎么办？", "可以依法申请行政复议或提起行政诉讼，也可拨打 12345 反映。"),
]
HOURS = [
    "周一至周五 09:00-12:00, 13:30-17:00（法定节假日除外）",
    "周一至周五 08:30-12:00, 14:30-17:30；周六 09:00-12:00（不打烊服务）",
    "周一至周五 09:00-17:00（中午不休）",
    "夏季（5月-9月）周一至周五 08:00-12:00, 15:00-18:00；冬季 08:30-12:00, 14:30-17:30",
]
STREETS = [
    "人民路",
    "建设路",
    "解放路",
    "新华路",
    "迎宾路",
    "政务路",
    "五一大道",
    "芙蓉路",
    "湘江路",
    "市民路",
]


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "big")


def read_items() -> list[dict[str, str]]:
    with ITEMS_CSV.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def catalog_code(index: int, row: dict[str, str], sub: int = 0) -> str:
    """12-character 基本编码: kind (2) + department (3) + sequence (4) + handling item (3)."""
    dept = _digest(row["department"]) % 1000
    return f"{KIND_CODES.get(row['kind'], '99')}{dept:03d}{index + 1:04d}{sub:03d}"


def scenarios(row: dict[str, str]) -> list[str]:
    return SPECIFIC_SCENARIOS.get(row["name"]) or SCENARIOS_BY_KIND.get(
        row["kind"], SCENARIOS_BY_KIND["其他行政权力"]
    )


def implements(row: dict[str, str], region: Region) -> bool:
    if region.level == "province":
        return True
    if row["name"] in PROVINCE_AND_CITY_ITEMS or row["department"] in CITY_ONLY_DEPARTMENTS:
        return region.level == "city"
    if region.level == "county":
        return _digest(row["name"], region.code) % COUNTY_GAP != 0
    return True


def department(row: dict[str, str], region: Region) -> str:
    dept = row["department"]
    if region.level == "province":
        return f"湖南省{dept}" if not dept.startswith("海关") else "长沙海关"
    if dept == "海关":
        return f"长沙海关驻{region.name}办事处"
    local = LOCAL_DEPARTMENT.get(dept, dept)
    if dept == "税务局":
        return f"国家税务总局{region.name}税务局"
    if dept == "消防救援总队" and region.level == "county":
        local = "消防救援大队"
    return f"{region.name}{local}"


def halls_for(regions: list[Region]) -> dict[str, list[dict[str, Any]]]:
    """Every county has a government-service centre (some a second, specialised hall); cities have
    a centre and a citizens' hall; the province has its centre. Addresses are demo data."""
    out: dict[str, list[dict[str, Any]]] = {}
    for region in regions:
        seed = _digest("hall", region.code)
        names = [f"{region.name}政务服务中心"]
        if region.level == "province":
            names = ["湖南省政务服务中心"]
        elif region.level == "city":
            names.append(f"{region.name}市民之家")
        elif seed % 3 == 0:
            names.append(f"{region.name}不动产登记和税务服务大厅")
        halls = []
        for n, name in enumerate(names, start=1):
            h = _digest(name)
            halls.append(
                {
                    "id": f"H{region.code}-{n:02d}",
                    "name": name,
                    "region_code": region.code,
                    "address": f"{region.name}{STREETS[h % len(STREETS)]}{h % 300 + 1}号（示例地址）",
                    "hours": HOURS[h % len(HOURS)],
                    "phone": f"0{730 + h % 15}-{8000_0000 + h % 999_9999}",
                    # Within a few kilometres of the seat, deterministic.
                    "lat": round(region.lat + ((h >> 8) % 400 - 200) / 10_000, 6),
                    "lng": round(region.lng + ((h >> 20) % 400 - 200) / 10_000, 6),
                    "demo": True,
                }
            )
        if region.code == PROVINCE:
            halls[0].update(
                address="长沙市岳麓区岳麓大道218号", lat=28.2127, lng=112.9452, phone="0731-12345"
            )
        out[region.code] = halls
    return out


def _unique_materials(materials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    unique = []
    for m in materials:
        if m["name"] not in seen:
            seen.add(m["name"])
            unique.append({"elicence_type": None, "notes": None, "blank_form": False, "sample": False, **m})
    return unique


def _template(index: int, row: dict[str, str], sub: int, scenario: str | None) -> dict[str, Any]:
    """The parts of an entry that do not depend on the region."""
    name = row["name"] if scenario is None else f"{row['name']}（{scenario}）"
    individual = row["audience"] == "个人"
    materials: list[dict[str, Any]] = [dict(APPLICATION_FORM)]
    materials.append(dict(ID_CARD) if individual else {**LICENCE, "name": "营业执照或统一社会信用代码证明"})
    materials += [dict(m) for m in THEME_MATERIALS.get(row["topic"], [])]
    materials += [dict(m) for m in SPECIFIC_MATERIALS.get(row["name"], [])]
    if scenario in SCENARIO_MATERIALS:
        materials.append(dict(SCENARIO_MATERIALS[scenario]))
    attorney = dict(POWER_OF_ATTORNEY)
    if scenario in DELEGATED:
        attorney["required"] = True
    materials.append(attorney)
    kind = row["kind"]
    licensing = kind == "行政许可"
    anticipate = 20 if licensing else (30 if kind == "行政确认" else (60 if kind == "行政给付" else 15))
    code = catalog_code(index, row, sub)
    return {
        "catalog_code": code,
        "parent_code": None if scenario is None else catalog_code(index, row),
        "scenario": scenario,
        "name": name,
        "audience": row["audience"],
        "theme": row["topic"],
        "kind": kind,
        "status": "active",
        "updated_at": SEEDED_AT,
        "legal_basis": [
            f"《{row['department'].removesuffix('厅').removesuffix('局')}领域相关法律法规》（示例数据）"
        ],
        "accept_conditions": [
            "申请人具有完全民事行为能力，或由监护人代为申请" if individual else "申请单位依法成立并有效存续",
            "申请材料齐全、符合法定形式",
            f"符合办理“{row['name']}”的法定条件",
        ]
        + ([f"属于“{scenario}”情形"] if scenario else []),
        "materials": _unique_materials(materials),
        "anticipate_day": anticipate,
        "fees": FEES.get(row["name"], []),
        "licensing": licensing,
        "individual": individual,
        "item_name": row["name"],
        "department_key": row["department"],
    }


def _entry(t: dict[str, Any], region: Region, halls: list[dict[str, Any]], version: int) -> dict[str, Any]:
    seed = _digest(t["catalog_code"], region.code)
    anticipate = t["anticipate_day"]
    promise = max(1, anticipate // (2 + seed % 4)) if seed % 5 else 0  # 0 = 即办
    online = seed % 4 != 0
    depth = 4 if online and seed % 3 == 0 else (3 if online else 1)
    dept = department({"department": t["department_key"], "name": t["item_name"]}, region)
    steps = [
        {"name": "申请", "description": "通过“湘易办”或到大厅窗口提交申请材料", "days": 0},
        {
            "name": "受理",
            "description": "窗口人员审查材料是否齐全、符合法定形式",
            "days": 0 if promise == 0 else 1,
        },
    ]
    if t["licensing"] or promise > 3:
        steps.append({"name": "审核", "description": f"{dept}业务科室审核", "days": max(0, promise - 2)})
    if t["licensing"] and seed % 7 == 0:
        steps.append({"name": "现场核查", "description": "必要时实地核查（不计入承诺时限）", "days": 0})
    steps.append(
        {"name": "决定", "description": "作出准予或不予决定并告知申请人", "days": 1 if promise else 0}
    )
    express = seed % 2 == 0
    steps.append(
        {"name": "送达", "description": "窗口领取或免费邮寄送达" if express else "窗口领取", "days": 0}
    )
    faq_pick = [GENERIC_FAQ[(seed >> s) % len(GENERIC_FAQ)] for s in (3, 11)]
    faq = [{"question": f"办理“{t['item_name']}”{q}", "answer": a} for q, a in dict(faq_pick).items()]
    region_prefix = "" if region.level == "province" else region.code
    return {
        "catalog_code": t["catalog_code"],
        "parent_code": t["parent_code"],
        "scenario": t["scenario"],
        "task_code": f"11{region.code}{_digest(dept) % 10**8:08d}{t['catalog_code']}",
        "task_version": version,
        "name": t["name"],
        "region_code": region.code,
        "department": dept,
        "audience": t["audience"],
        "theme": t["theme"],
        "kind": t["kind"],
        "status": "active",
        "updated_at": SEEDED_AT,
        "legal_basis": t["legal_basis"],
        "accept_conditions": t["accept_conditions"],
        "materials": t["materials"],
        "steps": steps,
        "anticipate_day": anticipate,
        "promise_day": promise,
        "fees": t["fees"],
        "halls": halls,
        "limit_scene_num": 0 if depth == 4 else 1,
        "is_online": online,
        "online_handle_depth": depth,
        "is_schedule": t["kind"] != "行政征收",
        "is_express": express,
        "is_pay_online": bool(t["fees"]) and online,
        "is_service_terminals": t["individual"] and seed % 3 != 1,
        "is_entry_center": True,
        "tongban_range": ["全省通办", "跨省通办", "全市通办", "本县（市、区）"][seed % 4]
        if region_prefix
        else "全省通办",
        "faq": faq,
        "supervision": f"投诉监督：12345 政务服务便民热线；{dept}监督电话见大厅公示",
        "demo": True,
    }


def scale_regions(scale: str) -> list[Region]:
    regions = list(hunan_regions())
    if scale == "full":
        return regions
    return [r for r in regions if r.code in DEMO_REGIONS]


def generate(scale: str) -> Iterator[dict[str, Any]]:
    """Every implementation entry of the library at `scale` ("demo" or "full"), deterministic."""
    regions = scale_regions(scale)
    halls = halls_for(regions)
    for index, row in enumerate(read_items()):
        templates = [_template(index, row, 0, None)]
        templates += [_template(index, row, n, s) for n, s in enumerate(scenarios(row), start=1)]
        for region in regions:
            if not implements(row, region):
                continue
            for t in templates:
                yield _entry(t, region, halls[region.code], 1)


def build_guide(
    index: int, row: dict[str, str], region_code: str = PROVINCE, version: int = 1
) -> dict[str, Any]:
    """One main item's entry in one region (used by tests and tools that need a single guide)."""
    region = next(r for r in hunan_regions() if r.code == region_code)
    return _entry(_template(index, row, 0, None), region, halls_for([region])[region.code], version)
