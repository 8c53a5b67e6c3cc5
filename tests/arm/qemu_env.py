"""An emulated 64-bit ARM Python 3.11, built from Debian bookworm's arm64 packages and run by qemu user-mode.

No root filesystem image, chroot or binfmt: `qemu-aarch64-static` runs the aarch64 `python3.11` unpacked from its
.debs (`dpkg-deb -x`), with `QEMU_LD_PREFIX` pointing at that root so the loader and libraries come from there.
aarch64 wheels are installed into a `site` folder by the host's pip (`--target`, `--platform manylinux_*_aarch64`).

Layout of the cache (`$DLKIT_ARM_CACHE`, else `~/.cache/dlkit/arm-env`), each part keyed by what goes into it:

    debs/                       downloaded .deb files
    closure.json                the arm64 packages to unpack, until apt's lists change
    root-<key>/                 python3.11:arm64 and its dependency closure, plus libstdc++6 (numpy needs it)
    site-<key>/                 the aarch64 wheels of a requirements list, installed (`pip install --target`)
    wheels-<key>/               the same wheels and pip's, as files (for `pip install --no-index --find-links`)
    cpu-<key>/<cpu>/            per CPU model: symlinks into the root and a /proc/cpuinfo for that Pi

qemu-user resolves absolute paths under `QEMU_LD_PREFIX` first, so `<cpu>/proc/cpuinfo` is what onnxruntime reads:
with the x86 host's file its CPU detection crashes (`import onnxruntime` segfaults under qemu).

Each part is built in a temporary folder and renamed into place, so a failed or interrupted build leaves nothing
half-made and a second call reuses what is there. Run it alone to build or check the cache:

    python tests/arm/qemu_env.py numpy==2.4.6 onnxruntime==1.32.0
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-aarch64-static"
ROOTS = ("python3.11:arm64", "libstdc++6:arm64")
SKIP = {"dpkg", "tar", "install-info", "perl-base"}  # in the closure through Pre-Depends, not needed to run Python
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
BUILDER_VERSION = "1"

_A72 = dict(part="0xd08", variant="0x0", revision="3", features="fp asimd evtstrm crc32 cpuid",
            model="Raspberry Pi 4 Model B Rev 1.4", hardware="BCM2835", code="d03114")
_A76 = dict(part="0xd0b", variant="0x4", revision="1",
            features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
            model="Raspberry Pi 5 Model B Rev 1.0", hardware="BCM2712", code="d04170")
CPUS = {"cortex-a72": _A72, "cortex-a76": _A76}  # qemu's -cpu name -> the Pi it is (4 and 5)


class ArmEnvError(RuntimeError):
    """A step of building the emulated ARM environment failed; the message names the step and the command."""


@dataclass(frozen=True)
class ArmEnv:
    """A built environment: `run` starts its aarch64 python under qemu with a given CPU model."""

    root: Path
    site: Path
    wheels: Path
    cpu_roots: dict

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / "python3.11"

    def command(self, args, cpu: str, *, python=None, site: bool = True) -> tuple[list[str], dict]:
        """The command line and environment that run `python3.11 ARGS` on the emulated `cpu` (`python`: another
        aarch64 interpreter, e.g. a venv's; `site`: put the host-installed wheels on PYTHONPATH)."""
        if cpu not in self.cpu_roots:
            raise ValueError(f"unknown CPU model {cpu!r}; use one of {', '.join(self.cpu_roots)}")
        env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
               "QEMU_LD_PREFIX": str(self.cpu_roots[cpu]), "QEMU_CPU": cpu, "PYTHONDONTWRITEBYTECODE": "1",
               "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        if site:
            env["PYTHONPATH"] = str(self.site)
        return [shutil.which(QEMU) or QEMU, "-cpu", cpu, str(python or self.python), *map(str, args)], env

    def run(self, args, cpu: str, *, python=None, site: bool = True, cwd=None,
            timeout: float = 900) -> subprocess.CompletedProcess:
        cmd, env = self.command(args, cpu, python=python, site=site)
        return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def cache_dir() -> Path:
    return Path(os.environ.get("DLKIT_ARM_CACHE") or Path.home() / ".cache" / "dlkit" / "arm-env")


def build(requirements, cache: str | os.PathLike | None = None, *, log=print) -> ArmEnv:
    """Builds (or reuses) the environment for `requirements` (pip lines, e.g. "onnxruntime==1.32.0").

    Raises:
        ArmEnvError: a step failed (apt, dpkg-deb, pip, or the emulated python does not start).
    """
    cache = Path(cache) if cache else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    _ensure_qemu(log)
    packages = _cached_closure(cache)
    root = _part(cache, "root", packages, lambda tmp: _make_root(cache / "debs", packages, tmp, log))
    site = _part(cache, "site", sorted(requirements), lambda tmp: _install_wheels(requirements, tmp, log))
    wheels = _part(cache, "wheels", sorted(requirements), lambda tmp: _install_wheels(requirements, tmp, log,
                                                                                        download=True))
    cpus = _part(cache, "cpu", [str(root), repr(sorted(CPUS.items()))], lambda tmp: _make_cpu_roots(root, tmp))
    env = ArmEnv(root, site, wheels, {cpu: cpus / cpu for cpu in CPUS})
    if not (cpus / ".verified").is_file():  # once per built environment: the emulated python starts on each CPU
        for cpu in CPUS:
            proc = env.run(["-c", "import platform; print(platform.machine())"], cpu, timeout=120)
            if proc.returncode != 0 or "aarch64" not in proc.stdout:
                raise ArmEnvError(f"the emulated python does not start on {cpu} (exit {proc.returncode}): "
                                  f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        (cpus / ".verified").write_text("ok")
    return env


def _part(cache: Path, kind: str, key_items, make) -> Path:
    key = hashlib.sha256("\n".join([BUILDER_VERSION, *map(str, key_items)]).encode()).hexdigest()[:16]
    final = cache / f"{kind}-{key}"
    if (final / ".complete").is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=cache))
    tmp.chmod(0o755)  # mkdtemp makes it private; the environment is read by whoever runs the tests
    try:
        make(tmp)
        (tmp / ".complete").write_text(key)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _sh(cmd, step: str, **kwargs) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as err:
        raise ArmEnvError(f"{step}: {cmd[0]} is not installed ({err})") from err
    if proc.returncode != 0:
        raise ArmEnvError(f"{step} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
                          f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc.stdout


def _ensure_qemu(log) -> None:
    """Installs qemu-user-static and enables the arm64 architecture in apt, when not done yet (needs root)."""
    if shutil.which(QEMU) is None:
        log("arm-env: installing qemu-user-static")
        _sh(["apt-get", "update", "-qq"], "apt-get update")
        _sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-user-static"],
            "apt-get install qemu-user-static", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if "arm64" not in _sh(["dpkg", "--print-foreign-architectures"], "dpkg --print-foreign-architectures").split():
        log("arm-env: dpkg --add-architecture arm64")
        _sh(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
        _sh(["apt-get", "update", "-qq"], "apt-get update (arm64 lists)")


def _cached_closure(cache: Path) -> list[str]:
    """`_closure()`, remembered until apt's package lists change (asking apt takes seconds)."""
    lists = Path("/var/lib/apt/lists")
    stamp = f"{BUILDER_VERSION} {lists.stat().st_mtime_ns if lists.exists() else 0} {ROOTS} {sorted(SKIP)}"
    saved = cache / "closure.json"
    if saved.is_file():
        data = json.loads(saved.read_text())
        if data.get("stamp") == stamp:
            return data["packages"]
    probe = subprocess.run(["apt-cache", "show", "python3.11:arm64"], capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        _sh(["apt-get", "update", "-qq"], "apt-get update (arm64 lists)")
        stamp = f"{BUILDER_VERSION} {lists.stat().st_mtime_ns} {ROOTS} {sorted(SKIP)}"
    packages = _closure()
    saved.write_text(json.dumps({"stamp": stamp, "packages": packages}))
    return packages


def _closure() -> list[str]:
    """The exact arm64 package versions python3.11 and libstdc++6 need, as `name:arm64=version`."""
    out = _sh(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
               "--no-breaks", "--no-replaces", "--no-enhances", *ROOTS], "apt-cache depends")
    names = sorted({line.strip() for line in out.splitlines()
                    if line and not line.startswith(" ") and line.strip().endswith(":arm64")})
    names = [n for n in names if n.split(":")[0] not in SKIP]
    policy = _sh(["apt-cache", "policy", *names], "apt-cache policy")
    versions, current = {}, None
    for line in policy.splitlines():
        if line and not line.startswith(" "):
            current = line.rstrip(":")
        elif line.strip().startswith("Candidate:") and current:
            versions[current] = line.split(":", 1)[1].strip()
    missing = [n for n in names if versions.get(n) in (None, "(none)")]
    if missing:
        raise ArmEnvError(f"apt has no candidate for {', '.join(missing)}; run apt-get update after "
                          "dpkg --add-architecture arm64")
    return [f"{n}={versions[n]}" for n in names]


def _make_root(debs: Path, packages: list[str], root: Path, log) -> None:
    debs.mkdir(exist_ok=True)
    log(f"arm-env: downloading {len(packages)} arm64 packages")
    _sh(["apt-get", "download", "-qq", *packages], "apt-get download", cwd=debs)
    for spec in packages:
        name, version = spec.split(":")[0], spec.split("=", 1)[1].split(":")[-1]
        matches = sorted(debs.glob(f"{name}_*{version.replace('+', '*')}*_arm64.deb"))
        if not matches:
            raise ArmEnvError(f"apt-get download left no .deb for {spec} in {debs}")
        _sh(["dpkg-deb", "-x", str(matches[-1]), str(root)], f"dpkg-deb -x {matches[-1].name}")


def _install_wheels(requirements, folder: Path, log, download: bool = False) -> None:
    """Installs the aarch64 wheels into `folder` (`--target`), or downloads them and pip's own (`download`), for a
    `pip install --no-index --find-links` under emulation."""
    log(f"arm-env: {'downloading' if download else 'installing'} aarch64 wheels for {' '.join(requirements)}")
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    verb = ["download", "--dest", str(folder)] if download else ["install", "--no-compile", "--target", str(folder)]
    _sh([sys.executable, "-m", "pip", *verb, "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
         "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *platforms, *requirements,
         *(["pip"] if download else [])], f"pip {verb[0]} (aarch64 wheels)")


def _make_cpu_roots(root: Path, folder: Path) -> None:
    """One prefix per CPU model: the root's top-level entries as symlinks, and that Pi's /proc/cpuinfo."""
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
    return text + f"Hardware\t: {info['hardware']}\nRevision\t: {info['code']}\nModel\t\t: {info['model']}\n"


if __name__ == "__main__":
    import time

    start = time.perf_counter()
    try:
        built = build(sys.argv[1:] or ["numpy==2.4.6", "onnxruntime==1.32.0"])
    except ArmEnvError as err:
        sys.exit(f"arm-env: {err}")
    print(f"arm-env ready in {time.perf_counter() - start:.1f} s: python {built.python}, site {built.site}")
