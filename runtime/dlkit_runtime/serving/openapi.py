"""An OpenAPI 3 description of the Open Inference Protocol (KServe v2) as `dlkit serve` speaks it: every path, every
status each can answer and the JSON bodies. A running server sends its own at GET /v2/openapi.json (its models' names
and whether it wants a token filled in); `python -m dlkit_runtime.serving.openapi > openapi.json` writes the generic
one. Standard library only (the datatypes come from `dlkit_runtime.serving.protocol`).

    from dlkit_runtime.serving.openapi import description; description(["cnn"], token=True)["paths"].keys()
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from dlkit_runtime.serving.protocol import DATATYPES

OPENAPI_PATH = "/v2/openapi.json"
_JSON = "application/json"
_REF = "#/components/schemas/"
_STATUS_WORDS = {400: "a malformed request, or one that does not fit the model (the error names the input, the "
                      "expected and the given)",
                 401: "no or a wrong `Authorization: Bearer <token>` (the server was started with a token)",
                 404: "no model (or version) by that name here; the error lists the models",
                 405: "another method on this path; `Allow` lists the methods it takes",
                 413: "the body (or its declared Content-Length) is over the server's --max-body-mb, its "
                      "pictures' headers declare more pixels than the server's limit, or a string for a text "
                      "model is over the server's limit per string (64 KiB)",
                 415: "a picture in a format the server cannot read without Pillow (the error names the package)",
                 503: "the model's queue is full (--max-queue); try again after Retry-After seconds"}


def description(names: Sequence[str] = (), *, token: bool = True, version: str | None = None) -> dict:
    """The OpenAPI 3.0 document of the server's HTTP interface.

    Args:
        names: the models served, listed as the values `{name}` may take; none: any name. Defaults to ().
        token: whether the server wants `Authorization: Bearer <token>` (then every path but the health probes
            answers 401 without it). Defaults to True.
        version: dlkit's version, for `info.version`. Defaults to the installed `dlkit_runtime`'s.

    Returns:
        The document as JSON-safe builtins.
    """
    if version is None:
        from dlkit_runtime import __version__ as version
    name = {"name": "name", "in": "path", "required": True, "description": "the model's name",
            "schema": {"type": "string", "minLength": 1, **({"enum": sorted(names)} if names else {})}}
    model_version = {"name": "version", "in": "path", "required": True,
                     "description": "the model's version: dlkit serves one, \"1\"",
                     "schema": {"type": "string", "enum": ["1"]}}
    paths = {
        "/v2": {"get": _get("Server metadata", "ServerMetadata", [])},
        "/v2/health/live": {"get": _get("Whether the server is live (open: no token needed)", "Live", [], open_=True)},
        "/v2/health/ready": {"get": _get("Whether the server is ready (open: no token needed)", "Ready", [],
                                         open_=True)},
        OPENAPI_PATH: {"get": _get("This description", None, [])},
        "/metrics": {"get": _metrics()},
    }
    for prefix, parameters in (("/v2/models/{name}", [name]),
                               ("/v2/models/{name}/versions/{version}", [name, model_version])):
        paths[prefix] = {"get": _get("A model's metadata: inputs, outputs, labels", "ModelMetadata", parameters, 404)}
        paths[prefix + "/ready"] = {"get": _get("Whether a model is ready", "ModelReady", parameters, 404)}
        paths[prefix + "/config"] = {"get": _get("A model's configuration, as Triton writes it", "ModelConfig",
                                                 parameters, 404)}
        paths[prefix + "/infer"] = {"post": _infer(parameters)}
    document = {
        "openapi": "3.0.3",
        "info": {"title": "dlkit serve: the Open Inference Protocol (KServe v2)", "version": version,
                 "description": "Models served by `dlkit serve` or a bundle's serve.py. Every error is "
                                "`{\"error\": \"...\"}` with a 4xx (or 503) status."},
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
    if token:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    else:
        for item in paths.values():
            for operation in item.values():
                operation["responses"].pop("401", None)
                operation.pop("security", None)
    return document


def _error(status: int, headers: dict | None = None) -> dict:
    response = {"description": _STATUS_WORDS[status], "content": {_JSON: {"schema": {"$ref": _REF + "Error"}}}}
    if headers:
        response["headers"] = headers
    return response


def _allow() -> dict:
    return {"Allow": {"description": "the methods this path takes", "schema": {"type": "string"}}}


def _get(summary: str, schema: str | None, parameters: list, *codes: int, open_: bool = False) -> dict:
    """A GET answered with JSON: `schema` (or any object) on 200, the error body for `codes`, 401 and 405."""
    body = {"$ref": _REF + schema} if schema else {"type": "object"}
    responses = {"200": {"description": "OK", "content": {_JSON: {"schema": body}}}}
    responses.update({str(code): _error(code) for code in codes})
    responses["401"] = _error(401)
    responses["405"] = _error(405, _allow())
    operation = {"summary": summary, "parameters": parameters, "responses": responses}
    if open_:
        operation["security"] = []
        del responses["401"]
    return operation


def _metrics() -> dict:
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {"summary": "Prometheus metrics: requests by model and status, latency, batch sizes, queue depth",
            "parameters": [], "responses": {"200": {"description": "Prometheus' text format 0.0.4", "content": text},
                                            "401": _error(401), "405": _error(405, _allow())}}


def _infer(parameters: list) -> dict:
    """POST infer: JSON, or the binary tensor data extension (JSON, its length in Inference-Header-Content-Length,
    then the raw tensors), both ways; or one picture as the body, for a model with one image input."""
    length = {"Inference-Header-Content-Length": {
        "description": "the length of the JSON part; the binary outputs follow it", "schema": {"type": "integer"}}}
    raw = {"schema": {"type": "string", "format": "binary"}}
    pictures = {f"image/{kind}": raw for kind in ("jpeg", "png", "webp", "gif", "bmp")}
    header = {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
              "description": "with the binary extension: the length of the JSON part of the body",
              "schema": {"type": "integer", "minimum": 0}}
    classes = {"name": "classification", "in": "query", "required": False,
               "description": "with a picture body: answer the first output's top k classes, \"score:index:label\"",
               "schema": {"type": "integer", "minimum": 1}}
    return {
        "summary": "Run the model on the inputs given; concurrent requests are batched",
        "description": "Tensors as JSON or binary data. A BYTES input of shape [N] or [N, 1] holds N encoded pictures "
                       "for a model with one image input, or N UTF-8 strings for a text model's input (the model's "
                       "metadata lists it as BYTES [-1]), which the server turns into the model's token ids.",
        "parameters": [*parameters, header, classes],
        "requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": _REF + "InferRequest"}},
                                                      "application/octet-stream": raw, **pictures}},
        "responses": {
            "200": {"description": "the outputs: JSON, or JSON and binary outputs (application/octet-stream)",
                    "headers": length, "content": {_JSON: {"schema": {"$ref": _REF + "InferResponse"}},
                                                   "application/octet-stream": raw}},
            "400": _error(400), "401": _error(401), "404": _error(404), "405": _error(405, _allow()),
            "413": _error(413), "415": _error(415),
            "503": _error(503, {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}),
        },
    }


def _schemas() -> dict:
    """The protocol's bodies (KServe v2's $metadata_server_response, $inference_request, ... and the error)."""
    datatype = {"type": "string", "enum": [*DATATYPES, "BYTES"]}
    shape = {"type": "array", "items": {"type": "integer", "minimum": -1}}
    tensor = {"type": "object", "required": ["name", "datatype", "shape"],
              "properties": {"name": {"type": "string"}, "datatype": datatype, "shape": shape}}
    element = {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}, {"$ref": _REF + "TensorData"}]}
    parameters = {"type": "object", "additionalProperties": True}
    data_tensor = {**tensor, "properties": {**tensor["properties"], "parameters": {
        "type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        "additionalProperties": True}, "data": {"$ref": _REF + "TensorData"}}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
        "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}}}},
        "ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"}, "inputs": {"type": "array", "items": tensor},
            "outputs": {"type": "array", "items": tensor}, "parameters": parameters}},
        "ModelReady": {"type": "object", "required": ["name", "ready"],
                       "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
        "ModelConfig": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}},
                        "additionalProperties": True},
        "TensorData": {"type": "array", "items": element},
        "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"}, "parameters": {**parameters, "properties": {
                "binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "items": data_tensor},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "parameters": {**parameters, "properties": {
                    "binary_data": {"type": "boolean"}, "classification": {"type": "integer", "minimum": 0}}}}}}}},
        "InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "parameters": parameters, "outputs": {"type": "array", "items": data_tensor}}},
    }


if __name__ == "__main__":
    json.dump(description(), sys.stdout, indent=2)
    sys.stdout.write("\n")
