"""Which packages a build holds (the rest of the project's metadata is in pyproject.toml).

`SANXIANG_DIST=production` (the Dockerfile's runtime build) leaves the sandbox out: the simulated
upstreams never ship in a production image. The migrations, kept at the repository's top, are
installed as the package `bff.migrations`.
"""

import os

from setuptools import find_packages, setup

production = os.environ.get("SANXIANG_DIST") == "production"
packages = find_packages(
    include=["bff*", "auth*", "push*", "adapters*", *([] if production else ["sandbox*"])]
)
setup(packages=[*packages, "bff.migrations"], package_dir={"bff.migrations": "migrations"})
