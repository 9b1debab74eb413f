"""Triton Python-backend model: the digits CNN's ONNX file run with onnxruntime on the CPU.

Triton calls ``initialize`` once per instance and ``execute`` with the requests of one dynamic
batch. The requests are stacked into one onnxruntime call and the rows split back per request, so
each response holds exactly its own rows, in order. Input and output names and shapes come from
``config.pbtxt`` (checked by Triton before ``execute`` runs).
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        options = ort.SessionOptions()
        # One thread: the model is tiny, and the test machines have 2 cores for everything.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.onnx_input = self.session.get_inputs()[0].name

    def execute(self, requests):
        arrays = [
            pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests
        ]
        rows = np.concatenate(arrays).astype(np.float32, copy=False)
        (logits,) = self.session.run(None, {self.onnx_input: rows})
        responses, start = [], 0
        for a in arrays:
            part = np.ascontiguousarray(logits[start : start + len(a)], dtype=np.float32)
            start += len(a)
            out = pb_utils.Tensor(self.output_name, part)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
