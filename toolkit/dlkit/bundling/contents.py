"""What a bundle holds, file by file: the models, `manifest.json`, the runtime's sources, the pinned requirements,
`predict.py`, `bench.py` (and `serve.py`), `install.sh`, the systemd units and the README, from the templates in
`dlkit.bundling.files`."""

from __future__ import annotations

import json
from pathlib import Path

from dlkit.core.catalogue import PYTHON_FLOOR, SYSTEMS, Device
from dlkit.core.runtime_sources import runtime_sources

SERVE_SERVICE = "dlkit-serve"
SERVICE_NAME = "dlkit-predict"


def bundle_files(manifest: dict, datas: list[bytes], spec: Device) -> dict[str, bytes]:
    """Every file of the bundle, by relative path."""
    from dlkit.bundling import files as templates

    here = Path(templates.__file__).parent
    files = {m["file"]: data for m, data in zip(manifest["models"], datas)}
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    files.update(runtime_sources())
    files["requirements.txt"] = ("\n".join(manifest["requirements"]) + "\n").encode()
    files["predict.py"] = (here / "predict.py").read_bytes()
    if manifest.get("serve"):
        files["serve.py"] = (here / "serve.py").read_bytes()
        files[f"{SERVE_SERVICE}.service.in"] = templates.SERVE_SERVICE.format(model=manifest["models"][0]["file"],
                                                                               target=spec.name).encode()
    files["bench.py"] = (here / "bench.py").read_bytes()
    service = f"{SERVICE_NAME}.service"
    name = manifest["models"][0]["file"]
    files["install.sh"] = templates.INSTALL_SH.format(
        machine=spec.machine, target=spec.name, service=service, floor=PYTHON_FLOOR,
        floor_tuple=", ".join(PYTHON_FLOOR.split(".")), tested=tested(),
        tested_cases="|".join(s.python for s in SYSTEMS.values()),
        systems_have=", ".join(f"{s.description.split(' (')[0]} has {s.python}" for s in SYSTEMS.values())).encode()
    files[f"{service}.in"] = templates.SERVICE.format(service=service, name=SERVICE_NAME, model=name,
                                                         target=spec.name).encode()
    rows = "".join(f"| `{m['file']}` | the model ({m['precision']}{', default' if i == 0 else ''}), sha256 "
                   f"`{m['sha256'][:16]}...` |\n" for i, m in enumerate(manifest["models"]))
    tensors = "\n".join(f"- {kind} `{t['name']}`: {t['dtype']} {['N' if d is None else d for d in t['shape']]}"
                        for kind, key in (("input", "inputs"), ("output", "outputs")) for t in manifest[key])
    files["README.md"] = templates.README.format(
        model=name, target_name=spec.description, version=manifest["dlkit_version"], created=manifest["created"],
        requirements=" and ".join(manifest["requirements"]), model_rows=rows, service=service, tensors=tensors,
        advice=spec.advice, tested=tested(), pythons=" and ".join(s.python for s in SYSTEMS.values()),
        memory=_memory_line(manifest.get("memory"))).encode()
    if manifest.get("serve"):
        files["README.md"] += templates.SERVE_README.format(
            name=manifest["models"][0]["file"].removesuffix(".onnx"), service=f"{SERVE_SERVICE}.service").encode()
    return files


def tested() -> str:
    """The Pythons every bundle's wheels are tested with, in words: "3.13 (Raspberry Pi OS trixie) and 3.11 (...)"."""
    return " and ".join(f"{s.python} ({s.description.split(' (')[0]})" for s in SYSTEMS.values())


def _memory_line(memory: dict | None) -> str:
    """The README's words for the model's run-time memory (`dlkit.core.memory.RunMemory.to_dict()`)."""
    if not memory:
        return ""
    mb = 1024 * 1024
    line = (f"Memory: the default model's process peaks at {memory['peak_rss_bytes'] / mb:.0f} MB resident (Python, "
            f"numpy and onnxruntime {memory['baseline_rss_bytes'] / mb:.0f} MB, the model loaded and one inference "
            f"{memory['model_rss_bytes'] / mb:.0f} MB; measured by dlkit on its host with onnxruntime "
            f"{memory['versions']['onnxruntime']}).")
    if memory.get("budget_bytes"):
        verdict = "over" if memory["over_budget"] else "within"
        line += f" That is {verdict} this device's budget of {memory['budget_bytes'] / mb:.0f} MB."
    return line
