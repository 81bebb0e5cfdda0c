"""`python -m sandbox [--host H] [--port P]`: serve the upstream simulations (DATABASE_URL required)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(prog="sandbox")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "seed"])
    parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8100")))
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        sys.exit("configuration error in DATABASE_URL: the sandbox needs a PostgreSQL URL")
    if args.command == "seed":
        from sandbox.seed import seed_all

        asyncio.run(seed_all(database_url))
        return
    import uvicorn

    from sandbox.app import create_sandbox_app

    uvicorn.run(
        create_sandbox_app(database_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
