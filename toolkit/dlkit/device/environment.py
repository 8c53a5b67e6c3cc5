"""An emulated 64-bit ARM Python, built from a Debian release's arm64 packages (trixie's python3.13 by default,
bookworm's python3.11: Raspberry Pi OS is that release's userland) and run by qemu user-mode.

No root filesystem image, chroot, binfmt or root rights: `qemu-aarch64-static` runs the aarch64 `python3.X`
unpacked from its .debs (`dpkg-deb -x`), with `QEMU_LD_PREFIX` pointing at that root so the loader and libraries
come from there. apt runs with a private state (its own sources, lists and cache under the cache folder, arm64 as its
only architecture), so the host's apt configuration is neither read nor changed. aarch64 wheels are installed into a
`site` folder by the host's pip (`--target`, `--platform manylinux_*_aarch64`).

Layout of the cache (`$DLKIT_DEVICE_CACHE`, else `~/.cache/dlkit/device`), each part keyed by what goes into it:

    apt-<os>/                   apt's private sources, lists and cache (that Debian release, arm64)
    closure-<os>.json           the arm64 packages to unpack (asked of apt once, then kept)
    root-<key>/                 python3.X:arm64 and its dependency closure, plus libstdc++6 (numpy needs it)
    site-<key>/                 the aarch64 wheels of a requirements list for that Python, installed (`--target`)
    wheels-<key>/               the same wheels and pip's, as files (for `pip install --no-index --find-links`)
    cpu-<key>/<cpu>/            per CPU model: symlinks into the root and a /proc/cpuinfo for that device

qemu-user resolves absolute paths under `QEMU_LD_PREFIX` first, so `<cpu>/proc/cpuinfo` is what onnxruntime reads:
with the x86 host's file its CPU detection crashes (`import onnxruntime` segfaults under qemu).

Each part is built in a temporary folder and renamed into place, under a lock, so a failed or interrupted build
leaves nothing half-made (a killed build's folder is removed by the next one) and a second call reuses what is
there. Build or check the cache from a shell with `dlkit device setup rpi4`.

`command(..., plugin=...)` runs the same python under Debian's dynamically linked `qemu-aarch64` (package qemu-user,
the same qemu version) instead, as only it loads TCG plugins: the instruction counter of `dlkit.device.work`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dlkit.core import files as _files
from dlkit.core.catalogue import CPUINFO, OS_DEFAULT, SYSTEMS, OperatingSystem
from dlkit.errors import DeviceSetupError, MissingDependencyError

QEMU = "qemu-aarch64-static"
PLUGIN_QEMU = "qemu-aarch64"  # Debian's qemu-user: the same qemu, dynamically linked, so it loads TCG plugins
SKIP = {"dpkg", "tar", "install-info", "perl-base"}  # in the closure through Pre-Depends, not needed to run Python
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
BUILDER_VERSION = "2"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
SOURCES = ("deb [signed-by={keyring}] http://deb.debian.org/debian {suite} main\n"
           "deb [signed-by={keyring}] http://deb.debian.org/debian {suite}-updates main\n"
           "deb [signed-by={keyring}] http://deb.debian.org/debian-security {suite}-security main\n")

CPUS = CPUINFO  # qemu's -cpu name -> the /proc/cpuinfo of the machine it stands for (the catalogue's)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Environment:
    """A built environment: `run` starts its aarch64 python under qemu with a given CPU model.

    Attributes:
        root: the unpacked Debian packages. site: the aarch64 wheels, installed. wheels: the same as files, or None
        when not asked for. cpu_roots: qemu's CPU name -> its prefix (the root plus that CPU's /proc/cpuinfo).
        requirements: the pip lines the site was built from. system: the OS whose packages the root holds.
    """

    root: Path
    site: Path
    wheels: Path | None
    cpu_roots: dict
    requirements: tuple[str, ...] = ()
    system: OperatingSystem = SYSTEMS[OS_DEFAULT]

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / f"python{self.system.python}"

    def command(self, args, cpu: str, *, python=None, site: bool = True, path=(), plugin=None
                ) -> tuple[list[str], dict]:
        """The command line and environment that run `python3.X ARGS` on the emulated `cpu` (`python`: another
        aarch64 interpreter, e.g. a venv's; `site`: put the host-installed wheels on PYTHONPATH; `path`: folders
        put before them; `plugin`: a TCG plugin as (its .so, {argument: value}), loaded by the dynamically linked
        qemu-aarch64, as the static one cannot load plugins)."""
        if cpu not in self.cpu_roots:
            raise ValueError(f"unknown CPU model {cpu!r}; use one of {', '.join(self.cpu_roots)}")
        env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
               "QEMU_LD_PREFIX": str(self.cpu_roots[cpu]), "QEMU_CPU": cpu, "PYTHONDONTWRITEBYTECODE": "1",
               "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        folders = [str(p) for p in path] + ([str(self.site)] if site else [])
        if folders:
            env["PYTHONPATH"] = os.pathsep.join(folders)
        qemu = [shutil.which(QEMU) or QEMU]
        if plugin is not None:
            library, arguments = plugin  # qemu's option syntax: a comma inside a value is written twice
            parts = [str(library), *(f"{key}={value}" for key, value in arguments.items())]
            qemu = [require_plugin_qemu(), "-plugin", ",".join(part.replace(",", ",,") for part in parts)]
        return [*qemu, "-cpu", cpu, str(python or self.python), *map(str, args)], env

    def run(self, args, cpu: str, *, python=None, site: bool = True, cwd=None,
            timeout: float = 900) -> subprocess.CompletedProcess:
        cmd, env = self.command(args, cpu, python=python, site=site)
        return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def cache_dir() -> Path:
    return Path(os.environ.get("DLKIT_DEVICE_CACHE") or Path.home() / ".cache" / "dlkit" / "device")


def require_qemu() -> str:
    """The path of qemu-aarch64-static.

    Raises:
        MissingDependencyError: it is not installed (the message names the package).
    """
    return _which(QEMU, f"the emulated device needs {QEMU}", "qemu-user-static (Debian, Ubuntu; Fedora: "
                  "qemu-user-static-aarch64, Arch: qemu-user-static)")


def require_plugin_qemu() -> str:
    """The path of qemu-aarch64, the dynamically linked qemu that loads TCG plugins (instruction counts).

    Raises:
        MissingDependencyError: it is not installed (the message names the package).
    """
    return _which(PLUGIN_QEMU, f"counting instructions needs {PLUGIN_QEMU} (Debian's qemu-user: the static qemu "
                  "cannot load plugins)", "qemu-user gcc")


def _which(binary: str, need: str, packages: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise MissingDependencyError(f"{need}, which is not installed; install it with: sudo apt-get install "
                                     f"{packages}")
    return found


def build(requirements, cache: str | os.PathLike | None = None, *, log: Log = print,
          wheels: bool = False, system: str = OS_DEFAULT) -> Environment:
    """Builds (or reuses) the environment for `requirements` (pip lines, e.g. "onnxruntime==1.32.0").

    Args:
        wheels: also download the wheels as files (for an offline `pip install` under emulation).
        system: the OS whose userland it is (a name of `catalogue.SYSTEMS`). Defaults to trixie.

    Raises:
        MissingDependencyError: qemu-user-static, apt, dpkg-deb or Debian's archive keyring is missing.
        DeviceSetupError: a step failed (an apt download, pip, or the emulated python does not start).
    """
    require_qemu()
    cache = Path(cache) if cache else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    spec = SYSTEMS[system]
    with locked(cache):
        packages = _cached_closure(cache, spec, log)
        root = _part(cache, "root", packages, lambda tmp: _make_root(cache, spec, packages, tmp, log))
        site = _part(cache, "site", _site_key(requirements, spec),
                     lambda tmp: _install_wheels(requirements, spec, tmp, log))
        files = _part(cache, "wheels", _site_key(requirements, spec),
                      lambda tmp: _install_wheels(requirements, spec, tmp, log, download=True)) if wheels else None
        cpus = _part(cache, "cpu", [str(root), repr(sorted(CPUS.items()))], lambda tmp: _make_cpu_roots(root, tmp))
        env = Environment(root, site, files, {cpu: cpus / cpu for cpu in CPUS}, tuple(requirements), spec)
        if not (cpus / ".verified").is_file():  # once per built environment: the emulated python starts on each CPU
            for cpu in CPUS:
                proc = env.run(["-c", "import platform; print(platform.machine())"], cpu, timeout=120)
                if proc.returncode != 0 or "aarch64" not in proc.stdout:
                    raise DeviceSetupError(f"the emulated python does not start on {cpu} (exit {proc.returncode}): "
                                           f"{(proc.stderr or proc.stdout).strip()[-300:]}")
            (cpus / ".verified").write_text("ok")
    return env


def built(requirements, cache: str | os.PathLike | None = None, system: str = OS_DEFAULT) -> bool:
    """Whether `build(requirements, system=system)` would reuse every part without downloading or building."""
    cache = Path(cache) if cache else cache_dir()
    saved = cache / f"closure-{system}.json"
    if not saved.is_file():
        return False
    packages = json.loads(saved.read_text()).get("packages", [])
    root = cache / f"root-{_key(packages)}"
    parts = [root, cache / f"site-{_key(_site_key(requirements, SYSTEMS[system]))}",
             cache / f"cpu-{_key([str(root), repr(sorted(CPUS.items()))])}"]
    return all((p / ".complete").is_file() for p in parts)


def _site_key(requirements, system: OperatingSystem) -> list[str]:
    return [*sorted(requirements), system.abi]  # the pip lines and the Python's ABI: a cp313 site is not a cp311 one


def _roots(system: OperatingSystem) -> tuple[str, ...]:
    return (f"python{system.python}:arm64", "libstdc++6:arm64")  # the root's closure: python3.X, libstdc++6 for numpy


def _key(items) -> str:
    return hashlib.sha256("\n".join([BUILDER_VERSION, *map(str, items)]).encode()).hexdigest()[:16]


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One build at a time per cache; with the lock held, a temporary folder left by a killed build is stale."""
    import fcntl

    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in cache.glob(".*-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        yield


def _part(cache: Path, kind: str, key_items, make) -> Path:
    key = _key(key_items)
    final = cache / f"{kind}-{key}"
    if (final / ".complete").is_file():
        return final
    def fill(tmp: Path) -> None:
        tmp.chmod(0o755)  # mkdtemp makes it private; the environment is read by whoever runs the tests
        make(tmp)
        (tmp / ".complete").write_text(key)

    return _files.build_folder(final, fill)


def _sh(cmd, step: str, **kwargs) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as err:
        raise MissingDependencyError(f"{step} needs {cmd[0]}, which is not installed: the emulated device is built "
                                     "with Debian's apt and dpkg (a Debian or Ubuntu host)") from err
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])[-300:]
        raise DeviceSetupError(f"{step} failed (exit {proc.returncode}): {tail}; check the network access to "
                               "deb.debian.org and pypi.org, then run dlkit device setup again")
    return proc.stdout


def _apt_options(cache: Path, system: OperatingSystem) -> list[str]:
    """apt with a private state under `cache/apt-<os>`: that release's arm64 lists, no lock, the host's untouched."""
    if not KEYRING.is_file():
        raise MissingDependencyError(f"the emulated device's packages are checked with Debian's archive keys, and "
                                     f"{KEYRING} is missing; install it with: sudo apt-get install "
                                     "debian-archive-keyring")
    apt = cache / f"apt-{system.name}"
    for folder in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(SOURCES.format(keyring=KEYRING, suite=system.suite))
    (apt / "status").touch()
    return ["-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::State::status={apt / 'status'}",
            "-o", f"Dir::Cache={apt / 'cache'}", "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={apt / 'sources.list.d'}",
            "-o", f"Dir::Etc::PreferencesParts={apt / 'preferences.d'}",
            "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64", "-o", "Debug::NoLocking=1",
            *(["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else [])]  # apt's _apt user cannot read ~root


def _cached_closure(cache: Path, system: OperatingSystem, log: Log) -> list[str]:
    """`_closure()`, asked of apt once and kept: later builds reuse the same package versions, offline."""
    saved, roots = cache / f"closure-{system.name}.json", _roots(system)
    if saved.is_file():
        data = json.loads(saved.read_text())
        if data.get("version") == BUILDER_VERSION and data.get("roots") == list(roots):
            return data["packages"]
    options = _apt_options(cache, system)
    log(f"device: reading Debian {system.suite}'s arm64 package lists (about 10 MB)")
    _sh(["apt-get", *options, "-qq", "update"], f"apt-get update (Debian {system.suite} arm64 lists)")
    packages = _closure(options, roots, system)
    tmp = saved.with_name(f".closure-{system.name}.json.tmp")
    tmp.write_text(json.dumps({"version": BUILDER_VERSION, "roots": list(roots), "packages": packages}))
    tmp.replace(saved)
    return packages


def _closure(options: list[str], roots: tuple[str, ...], system: OperatingSystem) -> list[str]:
    """The exact arm64 package versions python3.X and libstdc++6 need, as `name:arm64=version`."""
    out = _sh(["apt-cache", *options, "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
               "--no-breaks", "--no-replaces", "--no-enhances", *roots], "apt-cache depends")
    names = sorted({line.strip() if line.strip().endswith(":arm64") else line.strip() + ":arm64"
                    for line in out.splitlines() if line and not line.startswith(" ") and not line.startswith("<")})
    names = [n for n in names if n.split(":")[0] not in SKIP]
    policy = _sh(["apt-cache", *options, "policy", *names], "apt-cache policy")
    versions, current = {}, None
    for line in policy.splitlines():
        if line and not line.startswith(" "):
            current = line.rstrip(":")
            current = current if current.endswith(":arm64") else current + ":arm64"
        elif line.strip().startswith("Candidate:") and current:
            versions[current] = line.split(":", 1)[1].strip()
    missing = [n for n in names if versions.get(n) in (None, "(none)")]
    if missing:
        raise DeviceSetupError(f"Debian's arm64 lists have no candidate for {', '.join(missing)}; remove "
                               f"{cache_dir() / ('apt-' + system.name)} and run dlkit device setup again")
    return [f"{n}={versions[n]}" for n in names]


def _make_root(cache: Path, system: OperatingSystem, packages: list[str], root: Path, log: Log) -> None:
    debs = root / ".debs"  # inside the part: an interrupted download is removed with it
    debs.mkdir()
    log(f"device: downloading {len(packages)} Debian {system.suite} arm64 packages (python{system.python}, libraries)")
    _sh(["apt-get", *_apt_options(cache, system), "-qq", "download", *packages], "apt-get download (arm64 packages)",
        cwd=debs)
    for spec in packages:
        name, version = spec.split(":")[0], spec.split("=", 1)[1].split(":")[-1]
        matches = sorted(m for arch in ("arm64", "all")  # libraries are arm64, their data files "all"
                         for m in debs.glob(f"{name}_*{version.replace('+', '*')}*_{arch}.deb"))
        if not matches:
            raise DeviceSetupError(f"apt-get download left no .deb for {spec}; run dlkit device setup again")
        _sh(["dpkg-deb", "-x", str(matches[-1]), str(root)], f"dpkg-deb -x {matches[-1].name}")
    shutil.rmtree(debs)
    for top in ("bin", "lib", "sbin"):  # trixie's packages ship merged /usr: /lib is base-files' link to usr/lib
        if not (root / top).exists() and (root / "usr" / top).is_dir():
            (root / top).symlink_to(Path("usr") / top)


def _install_wheels(requirements, system: OperatingSystem, folder: Path, log: Log, download: bool = False) -> None:
    """Installs the aarch64 wheels into `folder` (`--target`), or downloads them and pip's own (`download`), for a
    `pip install --no-index --find-links` under emulation."""
    log(f"device: {'downloading' if download else 'installing'} aarch64 {system.abi} wheels: {' '.join(requirements)}")
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    verb = ["download", "--dest", str(folder)] if download else ["install", "--no-compile", "--target", str(folder)]
    _sh([sys.executable, "-m", "pip", *verb, "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
         "--python-version", system.python, "--implementation", "cp", "--abi", system.abi, *platforms, *requirements,
         *(["pip"] if download else [])], f"pip {verb[0]} (aarch64 wheels)")


def _make_cpu_roots(root: Path, folder: Path) -> None:
    """One prefix per CPU model: the root's top-level entries as symlinks, and that device's /proc/cpuinfo."""
    for cpu, info in CPUS.items():
        prefix = folder / cpu
        prefix.mkdir(parents=True)
        for entry in root.iterdir():
            if entry.name not in ("proc", ".complete"):
                (prefix / entry.name).symlink_to(entry)
        (prefix / "proc").mkdir()
        (prefix / "proc" / "cpuinfo").write_text(_cpuinfo(info))


def _cpuinfo(info: dict, cores: int = 4) -> str:
    block = ("processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n")
    text = "".join(block.format(n=n, **info) for n in range(cores))
    if info.get("model"):
        text += f"Hardware\t: {info['hardware']}\nRevision\t: {info['code']}\nModel\t\t: {info['model']}\n"
    return text
