"""What a bundle holds, file by file: the models, `manifest.json`, the runtime's sources, the pinned requirements,
`predict.py`, `bench.py` (and `serve.py`), `install.sh`, the systemd units and the README, from the templates in
`dlkit.bundling.files`."""

from __future__ import annotations

import json
from pathlib import Path

from dlkit.core.catalogue import Device
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
    files["install.sh"] = templates.INSTALL_SH.format(machine=spec.machine, target=spec.name,
                                                         service=service).encode()
    files[f"{service}.in"] = templates.SERVICE.format(service=service, name=SERVICE_NAME, model=name,
                                                         target=spec.name).encode()
    rows = "".join(f"| `{m['file']}` | the model ({m['precision']}{', default' if i == 0 else ''}), sha256 "
                   f"`{m['sha256'][:16]}...` |\n" for i, m in enumerate(manifest["models"]))
    tensors = "\n".join(f"- {kind} `{t['name']}`: {t['dtype']} {['N' if d is None else d for d in t['shape']]}"
                        for kind, key in (("input", "inputs"), ("output", "outputs")) for t in manifest[key])
    files["README.md"] = templates.README.format(
        model=name, target_name=spec.description, version=manifest["dlkit_version"], created=manifest["created"],
        requirements=" and ".join(manifest["requirements"]), model_rows=rows, service=service, tensors=tensors,
        advice=spec.advice).encode()
    if manifest.get("serve"):
        files["README.md"] += templates.SERVE_README.format(
            name=manifest["models"][0]["file"].removesuffix(".onnx"), service=f"{SERVE_SERVICE}.service").encode()
    return files
