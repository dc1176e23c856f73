"""A small threaded HTTP server for the dashboard's built files.

Envoy serves no files, so `retain up` runs this behind Envoy:
``python -m retain_cli.static --root frontend/dist --port N``. It serves
GET and HEAD only. A path that names no file and has no file extension gets
index.html, so the dashboard's client-side router can handle it. A missing
file with an extension, such as /assets/app.js, gets a 404. Paths that
resolve outside the root, through ``..`` or a symbolic link, get a 404 too.
"""

from __future__ import annotations

import argparse
import logging
import posixpath
import signal
import sys
import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit

log = logging.getLogger(__name__)

INDEX = "index.html"
# Vite names built assets by their content hash, so they never change.
IMMUTABLE_PREFIX = "/assets/"
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
# index.html names the current assets, so browsers revalidate it every time.
INDEX_CACHE = "no-cache"


class DashboardHandler(SimpleHTTPRequestHandler):
    """Serves files under one root, with index.html for client-side routes."""

    root: Path

    def __init__(self, *args: Any, root: Path, **kwargs: Any) -> None:
        self.root = root
        super().__init__(*args, directory=str(root), **kwargs)

    def send_head(self) -> BinaryIO | None:
        target = self._resolve(self.path)
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND, "file not found")
            return None
        # The base class opens self.path under directory; point it at target.
        self.path = "/" + quote(target.relative_to(self.root).as_posix())
        return super().send_head()

    def end_headers(self) -> None:
        if self.path.startswith(IMMUTABLE_PREFIX):
            self.send_header("Cache-Control", IMMUTABLE_CACHE)
        else:
            self.send_header("Cache-Control", INDEX_CACHE)
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _resolve(self, raw_path: str) -> Path | None:
        """Return the file to serve for a request path, or None for a 404."""
        path = posixpath.normpath(unquote(urlsplit(raw_path).path))
        try:
            candidate = (self.root / path.lstrip("/")).resolve()
            if candidate.is_dir():
                candidate = (candidate / INDEX).resolve()
            found = candidate.is_file()
        except (OSError, ValueError):  # a NUL byte or an over-long name
            return None
        if not candidate.is_relative_to(self.root):
            return None
        if found:
            return candidate
        if "." in posixpath.basename(path):
            return None
        return self.root / INDEX


def make_server(root: Path, host: str, port: int) -> ThreadingHTTPServer:
    """Bind a server for root on host:port; port 0 picks a free port."""
    root = root.resolve()
    if not (root / INDEX).is_file():
        raise FileNotFoundError(
            f"{root / INDEX} is missing; build the dashboard with `make frontend`"
        )
    handler = partial(DashboardHandler, root=root)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="Folder to serve.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks one.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    try:
        server = make_server(args.root, args.host, args.port)
    except (FileNotFoundError, OSError) as error:
        log.error("Dashboard file server cannot start: %s", error)
        sys.exit(2)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever, so it runs on another thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log.info("Serving %s on http://%s:%d", args.root, host, port)
    server.serve_forever()
    server.server_close()
    log.info("Dashboard file server stopped")


if __name__ == "__main__":
    main()
