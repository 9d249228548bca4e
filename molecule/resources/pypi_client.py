"""What a user of the index does from their own machine: build, upload, install.

Every call goes through the real clients (build, twine, pip) or plain HTTP,
against the index published on 127.0.0.1.
"""

import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import venv
from base64 import b64encode
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO_USERS = PROJECT_DIR / "inventories/local/group_vars/pypi_servers/upload_users.yml"
ROLE_DEFAULTS = PROJECT_DIR / "roles/pypi_index/defaults/main.yml"


def demo_users():
    """The upload users the local inventory provisions."""
    return yaml.safe_load(DEMO_USERS.read_text())["pypi_index_upload_users"]


def run(argv, timeout=600, **kwargs):
    """Run a client command; its output is kept for the assertion message. One that hangs raises
    TimeoutExpired after `timeout` seconds."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, **kwargs)


def make_package(workdir, name, version, dependencies=(), requires_python=None):
    """Build the guide's sample package (a hello_world() function) as sdist and wheel."""
    src = workdir / "src"
    (src / name).mkdir(parents=True)
    (src / name / "__init__.py").write_text('def hello_world():\n    print("hello world")\n')
    (src / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        f'name = "{name}"\n'
        f'version = "{version}"\n'
        'description = "Hello world enterprise edition"\n'
        f"dependencies = {json.dumps(list(dependencies))}\n"
        + (f'requires-python = "{requires_python}"\n' if requires_python else "")
    )
    dist = workdir / "dist"
    # The build tools are pinned in requirements.txt; --no-isolation uses them
    # instead of fetching setuptools again for every build.
    result = run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
                  "--outdir", str(dist), str(src)])
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(dist.iterdir())


def client_env(**extra):
    """This machine's environment as a client's: without the CA bundle variables
    that requests (under pip and twine) lets override --cert (psf/requests#3829)."""
    env = {key: value for key, value in os.environ.items() if key not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    return {**env, **extra}


def twine_upload(url, files, user, password, cert=None, reader=None):
    """Upload with twine as a user would, the password from the environment.

    A successful upload returns once the index lists every file (read as the
    reader, by default the uploader): the /simple/ pages are static files,
    rebuilt by a service just after a file lands, so for a moment they may not
    show it yet.
    """
    env = client_env(TWINE_USERNAME=user, TWINE_PASSWORD=password,
                     PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    verify = ["--cert", str(cert)] if cert else []
    result = run([sys.executable, "-m", "twine", "upload", "--non-interactive",
                  "--disable-progress-bar", "--repository-url", f"{url}/", *verify,
                  *map(str, files)], env=env)
    if result.returncode == 0:
        for path in files:
            assert wait_listed(url, Path(path).name, reader or (user, password), cafile=cert), f"{path} never listed"
    return result


def uv_publish(url, files, token):
    """`uv publish` with an upload token, as its documentation shows (the user __token__)."""
    env = client_env(UV_NO_CONFIG="1", UV_PUBLISH_TOKEN=token)
    return run(["uv", "publish", "--publish-url", f"{url}/", *map(str, files)], env=env)


POETRY = PROJECT_DIR / ".cache/poetry/bin/poetry"


def poetry_publish(url, files, token, workdir):
    """`poetry publish` of built files with an upload token, set for a repository named corp as its
    documentation shows (POETRY_PYPI_TOKEN_<REPOSITORY>)."""
    env = client_env(POETRY_REPOSITORIES_CORP_URL=f"{url}/", POETRY_PYPI_TOKEN_CORP=token,
                     POETRY_CACHE_DIR=str(workdir / "poetry-cache"), POETRY_CONFIG_DIR=str(workdir / "poetry-config"),
                     PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    dist = Path(files[0]).parent
    return run([str(POETRY), "publish", "--no-interaction", "--repository", "corp", "--dist-dir", str(dist)],
               env=env, cwd=dist.parent / "src")


def project_page(url, file_name):
    """The /simple/ page of the project a package file belongs to (PEP 503 name)."""
    name = re.split(r"-\d", file_name, maxsplit=1)[0]
    return f"{url}/simple/{re.sub(r'[-_.]+', '-', name).lower()}/"


def page_text(url, credentials=None, cafile=None, headers=None, missing=None):
    """Body of a page. Any answer but 200 raises (urllib's HTTPError, an OSError, which wait_for counts as a look
    that saw it), so that a check of what a page lacks never passes on an error; but a 404 returns `missing`, when
    the caller gives it, for a page that may rightly be absent."""
    headers = {**(headers or {}), **({"Authorization": basic_auth(credentials)} if credentials else {})}
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30,
                                    context=context) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        if error.code == 404 and missing is not None:
            return missing
        raise


# How long a test waits for a state that comes by itself (a page rebuilt, a
# cache entry stored, a ban, a replica caught up): long enough for a shared
# 2-CPU CI machine under load, where what takes 0.1 s idle may take seconds.
# A state that never comes still fails, only later.
WAIT_SECONDS = 60


def wait_for(observe, seconds=WAIT_SECONDS, what=None, until=bool, pause=0.2):
    """observe() again and again until until(its value) holds; returns that value.

    Bounded in time and in looks: at most `seconds` (and at least two looks,
    so that one slow look cannot use up the time), `pause` seconds apart. An
    OSError or an HTTP protocol error counts as a look that saw that error.
    Past the bound it fails, saying what was awaited (`what`, else observe's
    name), for how long and how many looks, and what the last look saw.
    """
    started = time.monotonic()
    looks = 0
    while True:
        looks += 1
        try:
            value = observe()
            if until(value):
                return value
        except (OSError, http.client.HTTPException) as error:
            value = error
        elapsed = time.monotonic() - started
        if elapsed >= seconds and looks >= 2:
            break
        time.sleep(pause)
    seen = repr(value)
    if len(seen) > 2000:
        seen = seen[:2000] + f"... ({len(seen)} characters)"
    raise AssertionError(f"waited {elapsed:.1f} s ({looks} looks) for {what or getattr(observe, '__name__', observe)};"
                         f" last seen: {seen}")


def wait_listed(url, file_name, credentials=None, cafile=None, seconds=WAIT_SECONDS):
    """Wait until the project page lists file_name in both forms, HTML and PEP 691 JSON (the page service writes
    one file, then the other); True, or an AssertionError that says what the pages last held."""
    page = project_page(url, file_name)
    wait_for(lambda: (page_text(page, credentials, cafile),
                      page_text(page, credentials, cafile, headers={"Accept": "application/vnd.pypi.simple.v1+json"})),
             seconds, f"{file_name} listed on {page} (HTML, JSON)", until=lambda forms: all(file_name in text
                                                                                          for text in forms))
    return True


def basic_auth(credentials):
    return "Basic " + b64encode(":".join(credentials).encode()).decode()


def http_response(url, method="GET", data=None, headers=None, cafile=None):
    """(status, headers) of one request, without following redirects; HTTPS verified against cafile."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    context = ssl.create_default_context(cafile=cafile) if cafile else None
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def http_status(url, method="GET", data=None, headers=None, cafile=None):
    """Status of one request, without following redirects."""
    return http_response(url, method, data, headers, cafile)[0]


def post_form(fields, file=None, credentials=None):
    """(body, headers) of a multipart POST to pypiserver: the fields, and a file part `content` as (name, bytes)."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    )
    if file:
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{file[0]}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + file[1] + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if credentials:
        headers["Authorization"] = basic_auth(credentials)
    return body, headers


def upload_form(file_name, content, credentials=None):
    """(body, headers) of the multipart upload twine sends, without twine's metadata fields."""
    return post_form({":action": "file_upload", "protocol_version": "1"}, (file_name, content), credentials)


def raw_upload_status(url, path, credentials=None, cafile=None):
    """Status of a bare multipart upload, as a client that sends no password would get."""
    body, headers = upload_form(path.name, path.read_bytes(), credentials)
    return http_status(f"{url}/", method="POST", data=body, headers=headers, cafile=cafile)


def fresh_venv(workdir):
    """A new virtualenv, as on a client machine; returns its python."""
    venv.create(workdir, with_pip=True)
    return workdir / "bin" / "python"


def pip(python, *args):
    """pip in that virtualenv, isolated from this machine's pip configuration."""
    return run([str(python), "-m", "pip", "--isolated", "--disable-pip-version-check", *args], env=client_env())


def status_from_inside(host, path, data=None, headers=None):
    """Status of a request sent from inside the index host itself (source 127.0.0.1), over plain HTTP."""
    return get_from_inside(host, f"http://127.0.0.1{path}", data, headers)[0]


def get_from_inside(host, url, data=None, headers=None):
    """(status, body) of a request of any URL sent from inside a host (a POST when data is given).

    The hosts have no curl: their own python3 sends it.
    """
    script = f"""
import base64, json, urllib.request, urllib.error
data = {None if data is None else b64encode(data).decode()!r}
request = urllib.request.Request({url!r}, headers={headers or {}!r},
                                 data=None if data is None else base64.b64decode(data))
try:
    with urllib.request.urlopen(request, timeout=30) as answer:
        print(json.dumps([answer.status, answer.read().decode(errors="replace")]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, ""]))
"""
    return tuple(json.loads(host.check_output("python3 -c %s", script)))


# Where every host serves its metrics (pypi_metrics_port).
METRICS_PORT = 9190


def metrics_from_inside(host, exporter="node"):
    """The samples a host's metrics port (pypi_metrics) serves at /<exporter>/metrics, asked on the host itself."""
    status, text = get_from_inside(host, f"http://127.0.0.1:{METRICS_PORT}/{exporter}/metrics")
    assert status == 200, f"/{exporter}/metrics answered {status}"
    return metrics(text)


def metrics(text):
    """{(name, labels text): value} of a Prometheus text page."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            samples[(name, labels.rstrip("}"))] = float(value)
    return samples


def upload_from_inside(host, filename, credentials):
    """Status of an upload sent from inside the index host itself; pypiserver only reads the name."""
    body, headers = upload_form(filename, b"not really a tarball", credentials)
    return status_from_inside(host, "/", body, headers)


class Index:
    """One Molecule host's index: where it answers and where it keeps its packages (its inventory variables), and
    where it keeps the rest (the role's defaults, which no test overrides)."""

    def __init__(self, host):
        variables = host.ansible.get_variables()
        self.host = host
        self.name = variables["inventory_hostname"]
        self.url = variables["pypi_index_public_url"]
        # Only set for hosts whose port 80 is published (see host_vars).
        self.http_url = variables.get("molecule_http_url")
        self.ca = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "clients" / self.name / "ca.pem")
        # The scenario's own roots when its host_vars set them (uploads go to the first).
        self.package_roots = variables.get("pypi_index_package_roots") or role_default("pypi_index_package_roots")
        self.packages_dir = self.package_roots[0]
        self.htpasswd = role_default("pypi_index_htpasswd_path")
        self.tls_dir = role_default("pypi_index_tls_dir")


def role_default(name):
    """A default of the pypi_index role, with the other defaults it names filled in."""
    defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
    return yaml.safe_load(re.sub(r"\{\{ (\w+) \}\}", lambda found: defaults[found.group(1)], json.dumps(defaults[name])))


class BackgroundRequests:
    """Calls step(n) for n = 0, 1, ... in a thread while the with-block runs,
    at most `limit` times and `seconds` long. step returns None when the
    request went well, else what went wrong; any exception it raises (an
    OSError, http.client's IncompleteRead) counts as wrong too, and the loop
    goes on.
    `done` counts the calls, `failures` holds (n, what went wrong)."""

    def __init__(self, step, limit, seconds=300):
        self.step, self.limit, self.seconds = step, limit, seconds
        self.done, self.failures = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def running(self):
        """Whether the loop still runs (it stops at its limit, its time, or the with-block's end)."""
        return self._thread.is_alive()

    def _run(self):
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and self.done < self.limit and time.monotonic() < deadline:
            try:
                failure = self.step(self.done)
            except Exception as error:  # noqa: BLE001 - any error of a step is a failed request, never a silent end
                failure = f"{type(error).__name__}: {error}"
            if failure is not None:
                self.failures.append((self.done, failure))
            self.done += 1
