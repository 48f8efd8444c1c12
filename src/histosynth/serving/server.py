"""Start and stop a real ``tritonserver`` on a model repository.

Uses the binary shipped in nvidia-pytriton (Triton 2.51, python backend only) started directly, not through
pytriton's Python API (which binds models to Python callables, while histosynth serves a model repository):

- a ``backends/python`` folder is assembled in the work dir from ``libtriton_python.so``,
  ``triton_python_backend_utils.py`` and the ``triton_python_backend_stub`` built for this Python (3.x);
- ``PATH`` starts with this interpreter's bin folder (the stub's Python finds the venv's numpy/onnxruntime)
  and ``LD_LIBRARY_PATH`` holds the ``nvidia_pytriton.libs`` folder plus Python's ``LIBDIR`` (else the stub
  loads the wrong libpython);
- shared memory regions get a per-server prefix, so several servers (tests) can run side by side, and the
  regions a killed server leaves in /dev/shm (kill -9, the OOM killer) can be removed without touching others'.

``TritonServer`` is a context manager; ``wait_ready`` raises :class:`ServerError` with the log tail when the
server exits or does not become ready in time. Another ``tritonserver`` binary (e.g. one with the
onnxruntime backend, for the production repository) can be passed as ``binary=`` with its own
``backend_directory=``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from histosynth.errors import ServerError

ENV_BINARY = "HISTOSYNTH_TRITONSERVER"  # another tritonserver binary to use instead of nvidia-pytriton's


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as e:  # pragma: no cover - it is a dependency
        raise ServerError("nvidia-pytriton is not installed (it ships the tritonserver binary)", "pip install nvidia-pytriton==0.7.0") from e
    return Path(pytriton.__file__).parent / "tritonserver"


def find_tritonserver() -> Path:
    """The tritonserver binary: $HISTOSYNTH_TRITONSERVER, else the one in nvidia-pytriton."""
    env = os.environ.get(ENV_BINARY)
    path = Path(env) if env else _pytriton_root() / "bin" / "tritonserver"
    if not path.is_file():
        raise ServerError(f"tritonserver binary not found at '{path}'", f"install nvidia-pytriton==0.7.0 or set {ENV_BINARY} to a tritonserver binary")
    return path


def pytriton_libs() -> Path:
    """The ``nvidia_pytriton.libs`` folder (auditwheel-vendored shared libraries the binary links against)."""
    root = _pytriton_root().parent.parent
    libs = root / "nvidia_pytriton.libs"
    if not libs.is_dir():
        raise ServerError(f"'{libs}' not found: this nvidia-pytriton install is incomplete", "reinstall nvidia-pytriton==0.7.0")
    return libs


def prepare_python_backend(backends_dir: str | Path) -> Path:
    """Assemble ``<backends_dir>/python`` with the stub for the running Python; -> ``backends_dir``."""
    backends_dir = Path(backends_dir)
    src = _pytriton_root()
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = src / "python_backend_stubs" / ver / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton ships no python-backend stub for Python {ver}", "use Python 3.8-3.13")
    dst = backends_dir / "python"
    dst.mkdir(parents=True, exist_ok=True)
    for f in (src / "backends" / "python" / "libtriton_python.so", src / "backends" / "python" / "triton_python_backend_utils.py", stub):
        target = dst / f.name
        if not target.exists() or target.stat().st_size != f.stat().st_size:
            shutil.copy2(f, target)
    return backends_dir


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver + python-backend stubs running this interpreter's packages."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    libdirs = [str(pytriton_libs()), sysconfig.get_config_var("LIBDIR") or ""]
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in libdirs if d)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class TritonServer:
    """A ``tritonserver`` process serving ``repo``; ``with TritonServer(repo, ...) as s: s.wait_ready()``."""

    def __init__(
        self,
        repo: str | Path,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        host: str = "127.0.0.1",
        workdir: str | Path | None = None,
        binary: str | Path | None = None,
        backend_directory: str | Path | None = None,
        log_verbose: int = 0,
        extra_args: list[str] | tuple[str, ...] = (),
        shm_default_bytes: int = 4 << 20,
    ):
        self.repo = Path(repo).absolute()
        self.http_port, self.grpc_port, self.metrics_port = int(http_port), int(grpc_port), int(metrics_port)
        self.host = host
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="histosynth-triton-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary) if binary else None
        self.backend_directory = Path(backend_directory) if backend_directory else None
        self.log_verbose = int(log_verbose)
        self.extra_args = list(extra_args)
        self.shm_default_bytes = int(shm_default_bytes)
        self.log_path = self.workdir / "tritonserver.log"
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.shm_prefix = f"histosynth{os.getpid()}-{uuid.uuid4().hex[:8]}"

    # -- addresses -------------------------------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def http_url(self) -> str:
        """``host:port`` as tritonclient.http expects it."""
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    # -- lifecycle --------------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        binary = self.binary or find_tritonserver()
        backends = self.backend_directory or prepare_python_backend(self.workdir / "backends")
        return [
            str(binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--metrics-interval-ms=1000",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=10",
            f"--log-verbose={self.log_verbose}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={self.shm_default_bytes}",
            *self.extra_args,
        ]

    def start(self) -> "TritonServer":
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not self.repo.is_dir() or not any(p.is_dir() and not p.name.startswith(".") for p in self.repo.iterdir()):
            raise ServerError(f"model repository '{self.repo}' is missing or empty", "build one with histosynth serve --name NAME (or histosynth.serving.build_repository)")
        busy = [f"{what} {port}" for what, port in (("http", self.http_port), ("grpc", self.grpc_port), ("metrics", self.metrics_port)) if not port_free(port, self._client_host)]
        if busy:
            raise ServerError(f"port(s) already in use on {self._client_host}: {', '.join(busy)}", "stop the other server or pass other --http-port/--grpc-port/--metrics-port")
        shm = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
        if shm < 2 * self.shm_default_bytes:
            raise ServerError(f"/dev/shm has only {shm >> 20} MiB free; the python backend needs shared memory for every batch", "give the container more shared memory (docker --shm-size=1g, or an emptyDir medium: Memory on /dev/shm)")
        cmd = self.command()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log_file.flush()
        # A new session: stop() can end the server and its python-backend stubs together by this group id.
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=server_env(), cwd=self.workdir, start_new_session=True)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _get(self, path: str, timeout: float = 2.0) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return 0

    def wait_ready(self, timeout: float = 60.0, models: list[str] | None = None) -> "TritonServer":
        """Block until the server (and ``models``, default: every model folder in the repository) is ready."""
        if self.proc is None:
            self.start()
        if models is None:
            models = sorted(p.name for p in self.repo.iterdir() if p.is_dir() and not p.name.startswith("."))
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                self.stop()
                raise ServerError(f"tritonserver {self.exit_reason()} before it was ready; log tail:\n{self.log(40)}", f"full log: {self.log_path}")
            if self._get("/v2/health/ready") == 200 and all(self._get(f"/v2/models/{m}/ready") == 200 for m in models):
                return self
            if time.monotonic() > deadline:
                tail = self.log(40)
                self.stop()
                raise ServerError(f"tritonserver was not ready after {timeout:.0f} s; log tail:\n{tail}", f"full log: {self.log_path}")
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL of the server's process group."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                    code = self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    code = self.proc.wait(timeout=10)
            else:
                code = self.proc.returncode
            self._reap()
        self._close_log()
        return code

    def _reap(self) -> None:
        """After the server exited: end what is left of its process group (python-backend stubs) and remove the
        shared memory regions with this server's prefix, which a graceful exit removes itself but a SIGKILL leaves."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log(self, tail_lines: int | None = None) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        if tail_lines is None:
            return text
        return "\n".join(text.splitlines()[-tail_lines:])

    def wait(self) -> int:
        """Block until the server exits (the CLI's foreground mode)."""
        assert self.proc is not None
        return self.proc.wait()

    def exit_reason(self) -> str:
        """How the process ended, in words: 'exited with code 1' or 'was killed by SIGKILL (signal 9)'."""
        code = self.proc.returncode if self.proc else None
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "a signal"
            return f"was killed by {name} (signal {-code})"
        return f"exited with code {code}"

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def cleanup(self) -> None:
        """Stop, and remove the work dir when this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
