"""Well-formed identifiers of the e-licence library: licence types, unified social credit codes.

The type codes are the 20-digit catalogue codes the guides already name as `elicence_type`
(sandbox/catalogue/guides.py), so a guide's material and a holder's licence meet on the same code.
"""

from __future__ import annotations

# type code -> (name, the source system that issues it)
TYPES: dict[str, tuple[str, str]] = {
    "11100000000000000001": ("居民身份证", "GA-RKXT"),
    "11100000000000000002": ("户口簿", "GA-RKXT"),
    "11100000000000000005": ("结婚证", "MZ-HYDJ"),
    "11100000000000000010": ("营业执照", "SCJG-DJXT"),
    "11100000000000000020": ("不动产权证书", "ZRZY-BDCDJ"),
    "11100000000000000030": ("出生医学证明", "WJ-CSYXZM"),
    "11100000000000000040": ("社会保障卡", "RS-SBK"),
    "11100000000000000050": ("机动车驾驶证", "GA-JGXT"),
}

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_code(body8: str) -> str:
    """GB 11714 organisation code: 8 characters and a check character."""
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(body8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return body8 + {10: "X", 11: "0"}.get(check, str(check))


def uscc(kind: str, region: str, body8: str) -> str:
    """GB 32100 unified social credit code: registration kind (2 chars), region, organisation code,
    check character. `kind` e.g. "11" (an organ of the state), "92" (个体工商户), "91" (an enterprise)."""
    first17 = kind + region + _org_code(body8)
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return first17 + _USCC_CHARS[(31 - total % 31) % 31]


def valid_uscc(code: str) -> bool:
    if len(code) != 18 or any(c not in _USCC_CHARS for c in code):
        return False
    return uscc(code[:2], code[2:8], code[8:16]) == code


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def valid_id_number(code: str) -> bool:
    if len(code) != 18 or not code[:17].isdigit():
        return False
    return (
        "10X98765432"[sum(int(d) * w for d, w in zip(code[:17], _ID_WEIGHTS, strict=True)) % 11] == code[17]
    )


def valid_holder(holder_type: str, holder_code: str) -> bool:
    if holder_type == "111":
        return valid_id_number(holder_code)
    if holder_type == "001":
        return valid_uscc(holder_code)
    return False


# The issuing departments of the demo (name, unified social credit code).
ISSUERS = {
    "ga": ("长沙市公安局岳麓分局", uscc("11", "430104", "00718100")),
    "jj": ("长沙市公安局交通警察支队", uscc("11", "430100", "00718121")),
    "mz": ("长沙市岳麓区民政局", uscc("11", "430104", "00718135")),
    "bdc": ("长沙市不动产登记中心", uscc("12", "430100", "MB1D0123")),
    "rs": ("长沙市人力资源和社会保障局", uscc("11", "430100", "00718147")),
    "wj": ("湖南省妇幼保健院", uscc("12", "430000", "44488031")),
    "sj": ("长沙市岳麓区市场监督管理局", uscc("11", "430104", "MB1D0456")),
}
