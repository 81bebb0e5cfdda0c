"""Test identities: 18-digit resident ID numbers with a correct GB 11643 check digit, mobiles."""

from __future__ import annotations

import random
from datetime import date, timedelta

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def random_id_number(rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    region = rng.choice(["430102", "430103", "430104", "430202", "430302", "430602", "430702"])
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    first17 = f"{region}{born:%Y%m%d}{rng.randrange(0, 1000):03d}"
    return first17 + check_digit(first17)


def random_phone(rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    return f"1{rng.choice('3456789')}{rng.randrange(0, 10**9):09d}"


def random_name(rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
