#!/usr/bin/env python3
"""`python3 -m http.server` for an imgfs mount: the same server, with each variant's
Content-Type (http.server guesses types from the extension, and `a.jpg@format,webp` has
none it knows, so it would send application/octet-stream and browsers would download
the image instead of showing it).

    python3 contrib/imgfs-http-server.py --directory /mnt/img --bind 127.0.0.1 8000

The type follows the same rules as contrib/nginx-imgfs.conf and contrib/Caddyfile:
`info`/`average-hue` anywhere in the chain is JSON, else the chain's `format,X`, else the
source's own extension (a variant without `format` keeps its source's format).
Mount with `--errors web` so that bad requests are 404 (http.server answers 404 for any
error opening a file anyway, but the mount's log then files them as requests' errors).
Standard library only.
"""

import argparse
import functools
import http.server
import re

FORMATS = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
    "heic": "image/heic", "heif": "image/heic", "avif": "image/avif", "gif": "image/gif",
    "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff",
}
JSON = re.compile(r"@(info|average-hue)(@|$)")
FORMAT = re.compile(r"@format,([a-z]+)(?=@|$)")
SOURCE_EXTENSION = re.compile(r"\.([A-Za-z]+)@")


def variant_type(path):
    """The Content-Type of the variant at `path`, or None if it is not a variant."""
    name = path.rsplit("/", 1)[-1]
    if "@" not in name:
        return None
    if JSON.search(name):
        return "application/json"
    chosen = FORMAT.findall(name)
    if chosen:
        return FORMATS.get(chosen[-1])
    source = SOURCE_EXTENSION.search(name)
    return FORMATS.get(source.group(1).lower()) if source else None


class Handler(http.server.SimpleHTTPRequestHandler):
    def guess_type(self, path):
        return variant_type(path) or super().guess_type(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int, nargs="?", default=8000)
    parser.add_argument("--bind", "-b", default="127.0.0.1")
    parser.add_argument("--directory", "-d", default=".")
    args = parser.parse_args()
    handler = functools.partial(Handler, directory=args.directory)
    with http.server.ThreadingHTTPServer((args.bind, args.port), handler) as server:
        print(f"serving {args.directory} at http://{args.bind}:{args.port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
