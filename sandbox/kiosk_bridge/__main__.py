"""`python -m sandbox.kiosk_bridge --port P --kiosk-id ID --allow-origin http://127.0.0.1:8000 [--bff-url U]`."""

from __future__ import annotations

import argparse
import base64
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def main() -> None:
    parser = argparse.ArgumentParser(prog="sandbox.kiosk_bridge")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("KIOSK_BRIDGE_PORT", "8765")))
    parser.add_argument("--kiosk-id", default=os.environ.get("KIOSK_ID", "kiosk-demo-01"))
    parser.add_argument(
        "--allow-origin", action="append", default=None, help="the kiosk page's origin (repeatable)"
    )
    parser.add_argument("--bff-url", default=None, help="where to send the login (default: the page origin)")
    parser.add_argument(
        "--key-file", default=os.environ.get("KIOSK_KEY_FILE"), help="base64 raw Ed25519 private key"
    )
    args = parser.parse_args()
    if args.key_file:
        with open(args.key_file, "rb") as handle:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(handle.read().strip()))
    else:
        key = Ed25519PrivateKey.generate()
    import uvicorn

    from sandbox.kiosk_bridge.app import create_bridge_app

    origins = args.allow_origin or ["http://127.0.0.1:8000"]
    uvicorn.run(
        create_bridge_app(args.kiosk_id, key, origins, args.bff_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
