"""Streaming, resumable, checksummed downloads with the standard library (urllib).

``download(url, dest, sha256=..., md5=...)``:

* cache hit: ``dest`` exists and matches its checksum (given, or recorded on first download) -> no request;
* otherwise streams into ``dest.part``; an existing ``.part`` is resumed with an HTTP ``Range`` request
  (a server that ignores it sends the whole file and the part is restarted); the part is renamed to
  ``dest`` only after the checksum matched, so ``dest`` is never a partial or unverified file;
* a file without a published checksum gets its sha256 recorded beside it (``dest.sha256``) with a warning,
  and later runs verify against that record;
* ``file://`` URLs are copied (offline installs, pre-downloaded archives);
* ``HISTOSYNTH_OFFLINE=1`` never touches the network; network errors become a :class:`DataError` whose
  fix names the cache path to place the file at and the ``--url file://...`` alternative.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from histosynth import defaults
from histosynth.errors import DataError

CHUNK = 1 << 20
USER_AGENT = "histosynth/0.1 (+https://pypi.org/project/histosynth)"


def file_digests(path: Path, want_md5: bool = False) -> tuple[str, str | None]:
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if want_md5 else None
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            sha.update(block)
            if md5 is not None:
                md5.update(block)
    return sha.hexdigest(), (md5.hexdigest() if md5 is not None else None)


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _check(path: Path, sha256: str | None, md5: str | None) -> tuple[bool, str, str | None]:
    actual_sha, actual_md5 = file_digests(path, want_md5=bool(md5))
    ok = True
    if sha256:
        ok = actual_sha.lower() == sha256.lower()
    elif md5:
        ok = (actual_md5 or "").lower() == md5.lower()
    return ok, actual_sha, actual_md5


def offline_hint(dest: Path, url: str | None = None) -> str:
    name = dest.name
    return f"put the file at {dest} (then rerun), or pass --url file:///path/to/{name}" + (f" (it is published at {url})" if url else "")


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` (see module docstring). ``sha256`` wins over ``md5`` when both are given."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recorded = _sidecar(dest).read_text().split()[0] if _sidecar(dest).is_file() and not sha256 and not md5 else None
    if dest.is_file():
        ok, actual, _ = _check(dest, sha256 or recorded, None if (sha256 or recorded) else md5)
        if ok:
            return dest
        warnings.warn(f"cached {dest} does not match its checksum (sha256 {actual}); downloading it again", stacklevel=2)
        bad = dest.with_name(dest.name + ".bad")
        os.replace(dest, bad)

    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise DataError(f"unsupported URL scheme in '{url}'", "use an http(s):// or file:// URL")
    if scheme != "file" and defaults.offline():
        raise DataError(f"offline (HISTOSYNTH_OFFLINE=1) and {dest.name} is not cached", offline_hint(dest, url))

    part = dest.with_name(dest.name + ".part")
    if scheme == "file":
        _copy_file(url, part, dest)
    else:
        _fetch_http(url, part, dest, progress=progress, timeout=timeout, headers=headers)

    ok, actual_sha, actual_md5 = _check(part, sha256 or recorded, None if (sha256 or recorded) else md5)
    if not ok:
        part.unlink(missing_ok=True)
        expected = f"sha256 {sha256 or recorded}" if (sha256 or recorded) else f"md5 {md5}"
        got = f"sha256 {actual_sha}" if (sha256 or recorded) else f"md5 {actual_md5}"
        raise DataError(
            f"checksum mismatch for {dest.name} from {url}: expected {expected}, got {got}",
            f"the download is corrupt or the URL serves another file; rerun to retry, check --url, or pass --sha256 {actual_sha} if you trust this file",
        )
    os.replace(part, dest)
    if not sha256:
        if not md5 and not recorded:
            warnings.warn(f"{dest.name} has no published checksum; recorded its sha256 {actual_sha} in {_sidecar(dest)} (later runs verify against it)", stacklevel=2)
        _sidecar(dest).write_text(f"{actual_sha}  {dest.name}\n")
    bad = dest.with_name(dest.name + ".bad")
    bad.unlink(missing_ok=True)
    return dest


def _copy_file(url: str, part: Path, dest: Path) -> None:
    src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not src.is_file():
        raise DataError(f"'{src}' (from {url}) does not exist", f"pass --url file:///absolute/path/to/{dest.name}")
    shutil.copyfile(src, part)


def _fetch_http(url: str, part: Path, dest: Path, *, progress: bool, timeout: float, headers: dict[str, str] | None) -> None:
    offset = part.stat().st_size if part.is_file() else 0
    hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
    if offset:
        hdrs["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=hdrs)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range past the end: the part is complete (or stale); verify it
            return
        hint = offline_hint(dest, url)
        if e.code in (401, 403):
            hint = f"the server wants a login or refuses this client: download {dest.name} in a browser and " + hint
        raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}", hint) from e
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"cannot reach {url}: {reason}", f"check the network/proxy (HTTPS_PROXY), or {offline_hint(dest, url)}") from e
    with resp:
        status = getattr(resp, "status", 200)
        mode = "ab" if (offset and status == 206) else "wb"
        done = offset if mode == "ab" else 0
        length = resp.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        from tqdm import tqdm

        with open(part, mode) as f, tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False) as bar:
            try:
                while block := resp.read(CHUNK):
                    f.write(block)
                    bar.update(len(block))
            except (socket.timeout, ConnectionError, OSError, http.client.HTTPException) as e:
                raise DataError(
                    f"download of {url} was interrupted after {f.tell()} bytes: {e}",
                    f"rerun to resume from {part}, or {offline_hint(dest, url)}",
                ) from e
