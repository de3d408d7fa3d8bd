"""onnxruntime sessions, made in one place for both lean scorers (`onnx_scorer`, `numpy_scorer`)."""

from __future__ import annotations

from clinrisk import library_logs


def inference_session(graph: bytes):
    """An onnxruntime InferenceSession on the CPU, one thread per call.

    One thread: gunicorn already runs a process per core, and no thread pool survives a fork
    badly. Its log severity follows the `onnxruntime` logger (`clinrisk.library_logs`).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = library_logs.onnxruntime_severity()
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
