"""Checks the benchmark makes on its host, with its own python3 (standard library only).

  probe.py expect URL TEXT      the URL answers 200 and its body holds TEXT
  probe.py fresh BASE FILE USER PASSWORD
                                upload FILE to BASE/ as twine would; print the
                                seconds until the POST is answered and until
                                BASE/simple/<project>/ lists it (HTML and JSON)
  probe.py mirror BASE PROJECT STATIC
                                fetch BASE/simple/PROJECT/ (passed through from
                                upstream) and the first file it links, cold;
                                copy both under STATIC at the same paths; print
                                the seconds of each fetch and the file's path

With BENCH_CA set, HTTPS is checked against that CA file; with BENCH_AUTH
(user:password) set, every request but the upload carries that read user.
"""

import base64
import json
import os
import re
import ssl
import sys
import time
import urllib.request
import uuid
from pathlib import Path

FRESHNESS_LIMIT_SECONDS = 60
CONTEXT = ssl.create_default_context(cafile=os.environ["BENCH_CA"]) if os.environ.get("BENCH_CA") else None


def basic(credentials):
    return "Basic " + base64.b64encode(credentials.encode()).decode()


READ_HEADERS = {"Authorization": basic(os.environ["BENCH_AUTH"])} if os.environ.get("BENCH_AUTH") else {}


def open_url(url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, headers={**READ_HEADERS, **(headers or {})})
    return urllib.request.urlopen(request, timeout=60, context=CONTEXT)


def get(url, headers=None):
    with open_url(url, headers=headers) as response:
        return response.status, response.read().decode(errors="replace")


def expect(url, text):
    status, body = get(url)
    if status != 200 or text not in body:
        sys.exit(f"{url}: status {status}, {text!r} {'found' if text in body else 'missing'}")


def upload(base, path, user, password):
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    with open_url(f"{base}/", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                  "Authorization": basic(f"{user}:{password}")}) as response:
        response.read()


def fresh(base, path, user, password):
    project = path.name.split("-")[0].replace("_", "-")
    page = f"{base}/simple/{project}/"
    started = time.monotonic()
    upload(base, path, user, password)
    uploaded = time.monotonic()
    # Listed in both forms: HTML, and PEP 691 JSON when the index has it (the
    # JSON Accept gets HTML from an index without it, which lists it too).
    json_form = {"Accept": "application/vnd.pypi.simple.v1+json"}
    while path.name not in get(page)[1] or path.name not in get(page, json_form)[1]:
        if time.monotonic() - uploaded > FRESHNESS_LIMIT_SECONDS:
            sys.exit(f"{path.name} not listed on {page} after {FRESHNESS_LIMIT_SECONDS} s")
        time.sleep(0.05)
    print(json.dumps({"post_seconds": uploaded - started, "listed_seconds": time.monotonic() - uploaded}))


def timed_get(url):
    """(seconds, body bytes) of one GET."""
    started = time.monotonic()
    with open_url(url) as response:
        body = response.read()
    return time.monotonic() - started, body


def mirror(base, project, static):
    page_seconds, page = timed_get(f"{base}/simple/{project}/")
    link = re.search(r'href="(/upstream-files/[^"#]+)', page.decode())
    if not link:
        sys.exit(f"{base}/simple/{project}/ links no file through /upstream-files/: is the upstream reachable?")
    file_seconds, content = timed_get(base + link.group(1))
    for path, body in ((f"simple/{project}/index.html", page), (link.group(1).lstrip("/"), content)):
        target = Path(static) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    print(json.dumps({"page_seconds": page_seconds, "file_seconds": file_seconds, "file_path": link.group(1)}))


def main():
    command, *args = sys.argv[1:]
    if command == "expect":
        expect(*args)
    elif command == "mirror":
        mirror(*args)
    elif command == "fresh":
        base, file_name, user, password = args
        fresh(base, Path(file_name), user, password)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
