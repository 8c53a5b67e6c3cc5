"""The wrapper users write by hand around onnxruntime (the peer in bench/serve.py): starlette, JSON in and out, one
`session.run` per request, no batching, no limits. It accepts the Open Inference Protocol's JSON infer request so
both servers get the same bytes.

    python bench/hand_wrapper.py MODEL.onnx PORT
"""

import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
output = session.get_outputs()[0].name


async def infer(request: Request):
    body = await request.json()
    feeds = {i["name"]: np.asarray(i["data"], np.float32).reshape(i["shape"]) for i in body["inputs"]}
    values = session.run(None, feeds)[0]
    return JSONResponse({"outputs": [{"name": output, "datatype": "FP32", "shape": list(values.shape),
                                      "data": values.reshape(-1).tolist()}]})


async def ready(request: Request):
    return JSONResponse({"ready": True})


app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"]), Route("/v2/health/ready", ready)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
