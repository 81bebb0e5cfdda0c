"""The HTTP server's own refusals as problem documents (uvicorn + httptools, `sanxiang serve`).

Before the app sees a request, the server parses it; what it cannot parse (a URL the parser cannot
represent — over 64 KB —, a malformed request line or header) uvicorn answers with a plain-text
400. Here the same refusal is a problem document: 414 `uri_too_long` when the URL is what failed,
400 `bad_request` otherwise, with the security headers every response carries. URLs up to that
size reach the edge, which refuses anything over `MAX_URL_BYTES` the same way.
"""

from __future__ import annotations

from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bff.platform.edge import SECURITY_HEADERS
from bff.platform.problems import PROBLEM_MEDIA_TYPE, render

# What the parser's URL offsets can hold (http-parser keeps them in 16 bits).
PARSER_URL_LIMIT = 65_535


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        too_long = len(getattr(self, "url", b"")) > PARSER_URL_LIMIT
        status, code = (414, "uri_too_long") if too_long else (400, "bad_request")
        detail = "the URL is too long" if too_long else "the request could not be parsed"
        body = render(status, code, detail)
        content = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        for name, value in [*self.server_state.default_headers, *SECURITY_HEADERS]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                f"content-type: {PROBLEM_MEDIA_TYPE}\r\n".encode(),
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"cache-control: no-store\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
