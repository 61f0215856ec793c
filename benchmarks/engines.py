"""Benchmark: the model alone in other inference engines vs ours, same batches and cores.

    python benchmarks/engines.py --model ResNet50 --images 128 --threads 2
    python benchmarks/engines.py --model MobileNetV3Small

In one process, on the same pre-decoded batches of ``--batch-size`` photo-like images
at the model's input size (``tests/trained_like.py``'s ``photo_like_images``), each
engine runs the same Keras feature model (pooled backbone output, what %%featurize
returns; the model's own ``preprocess_input`` applied in numpy, the same for all):

- TensorFlow float32: the package's own path (``inference.build``, ``predict``): the
  baseline of every ratio and cosine;
- ours at bfloat16 (``precision="bfloat16"``: BatchNorm folded, mixed bfloat16);
- OpenVINO float32 and bfloat16 (the Keras model exported as a SavedModel,
  ``openvino.convert_model``, compiled for CPU with ``INFERENCE_PRECISION_HINT`` f32 /
  bf16 and ``INFERENCE_NUM_THREADS``; both the latency hint, one request per batch, and
  the throughput hint, the batch split over its optimal number of requests);
- ONNX Runtime float32 (``model.export(format="onnx")``, i.e. tf2onnx);
- int8: OpenVINO with NNCF post-training quantization (``nncf.quantize``) and ONNX
  Runtime's static quantizer (u8s8, per channel), both calibrated on ``--calibration``
  photo-like images apart from the timed ones (the user's own training images).

Every engine is timed ``--repeat`` times, interleaved (A, B, C, ..., then again: each
round sees the same machine load), on ``--threads`` threads; the median counts. It
prints images/s, the ratios to TensorFlow float32 and to ours at bfloat16, and the
per-image cosine of each engine's features to TensorFlow float32's (last round, same
images). Then the digits check (``datasets.write_digits``, ``--digits-per-class``):
features at TensorFlow float32, ours bfloat16 and each int8 engine (recalibrated on the
digits' training split: the user's own images), a logistic regression (scikit-learn,
one seeded stratified split, as benchmarks/featurize.py) and its test accuracy. Last,
the decision rules: (a) an engine >= 1.2x ours at bfloat16 with per-image cosine >=
0.999; (b) int8 >= 1.5x ours at bfloat16, cosine >= 0.98, digits within 1 point.
Rule (a) also prints ours' own cosine: on trained-like weights every bfloat16 engine
lands near 0.997 (bfloat16's rounding), below 0.999, so only float32 engines can pass it.

An engine whose package is missing (``pip install openvino nncf onnxruntime tf2onnx``)
or whose conversion fails prints one line and is skipped. Weights (``--weights``, in
the first line) are chosen as benchmarks/featurize.py chooses them: ``imagenet`` when
Keras' cache has them, else ``trained-like`` (cached in --workdir).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from featurize import choose_weights, cosines  # next to this script; puts ROOT on sys.path

F32, BF16, INT8 = "float32", "bfloat16", "int8"
OV_HINTS = ("LATENCY", "THROUGHPUT")


@dataclasses.dataclass
class Engine:
    """One way to run the feature model: uint8 RGB batch -> (n, d) float32."""

    name: str
    precision: str
    run: object
    note: str = ""
    runs: list = dataclasses.field(default_factory=list)
    features: np.ndarray = None

    @property
    def label(self) -> str:
        return f"{self.name} {self.precision}"


def skipped(what: str, exc: BaseException) -> None:
    print(f"  {what}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
          flush=True)


# --------------------------------------------------------------------------- TensorFlow

def keras_engines(model, weights):
    """TensorFlow float32 and ours at bfloat16, as the package builds them."""
    from sparkdl_magics.inference import build
    from sparkdl_magics.weights import resolve_spec
    spec = resolve_spec(model, weights).spec
    base = build(dataclasses.replace(spec, precision=F32))
    ours = build(dataclasses.replace(spec, precision=BF16))
    return base, [Engine("TensorFlow", F32, base.predict, f"ran {base.precision}"),
                  Engine("ours", BF16, ours.predict, f"ran {ours.precision}; BatchNorm folded")]


# --------------------------------------------------------------------------- OpenVINO

def openvino_model(keras_model, folder):
    """The Keras feature model as an OpenVINO model (through a SavedModel)."""
    import openvino as ov
    path = os.path.join(folder, "savedmodel")
    keras_model.export(path, format="tf_saved_model", verbose=False)
    return ov.convert_model(path)


def openvino_runner(compiled, hint):
    """A batch function for *compiled*: latency, one request for the batch; throughput,
    the batch split over the compiled model's optimal number of requests."""
    import openvino as ov
    if hint == "LATENCY":
        request = compiled.create_infer_request()
        return lambda x: np.array(request.infer({0: x})[0], dtype=np.float32)
    n = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, n)
    parts = {}
    queue.set_callback(lambda request, i: parts.__setitem__(
        i, np.array(request.get_output_tensor(0).data, dtype=np.float32)))

    def run(x):
        parts.clear()
        chunks = [c for c in np.array_split(x, min(n, len(x))) if len(c)]
        for i, chunk in enumerate(chunks):
            queue.start_async({0: np.ascontiguousarray(chunk)}, userdata=i)
        queue.wait_all()
        return np.concatenate([parts[i] for i in range(len(chunks))])
    return run


def openvino_engines(ov_model, preprocess, precision, threads, hints=OV_HINTS,
                     name="OpenVINO"):
    """*ov_model* compiled for CPU at *precision* (f32/bf16 inference hint; int8: the
    quantized model, other ops at the CPU's default) under each of *hints*."""
    import openvino as ov
    core = ov.Core()
    out = []
    for hint in hints:
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint}
        if precision in (F32, BF16):
            config["INFERENCE_PRECISION_HINT"] = {F32: "f32", BF16: "bf16"}[precision]
        compiled = core.compile_model(ov_model, "CPU", config)
        run = openvino_runner(compiled, hint)
        ran = compiled.get_property("INFERENCE_PRECISION_HINT")
        ran = ran.get_type_name() if hasattr(ran, "get_type_name") else str(ran)
        streams = compiled.get_property("NUM_STREAMS")
        out.append(Engine(f"{name} ({hint.lower()})", precision,
                          lambda x, run=run: run(preprocess(np.asarray(x, np.float32))),
                          f"inference hint {ran}, {streams} stream(s)"))
    return out


def nncf_int8(ov_model, preprocess, calibration):
    """*ov_model* quantized to int8 by NNCF, calibrated on *calibration* (uint8 batch)."""
    import nncf
    nncf.set_log_level(logging.ERROR)
    items = [np.asarray(preprocess(img[None].astype(np.float32)), np.float32)
             for img in calibration]
    return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=len(items))


# --------------------------------------------------------------------------- ONNX Runtime

def onnx_file(keras_model, folder):
    """The Keras feature model exported to ONNX (Keras' exporter: tf2onnx)."""
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    path = os.path.join(folder, "model.onnx")
    keras_model.export(path, format="onnx", verbose=False)
    return path


def onnxruntime_engine(path, preprocess, precision, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return Engine("ONNX Runtime", precision, lambda x: session.run(
        None, {name: np.asarray(preprocess(np.asarray(x, np.float32)), np.float32)})[0],
        "intra-op threads " + str(threads))


def onnxruntime_int8(path, preprocess, calibration, folder):
    """*path* statically quantized (QOperator: uint8 activations, int8 weights per
    channel; 4.6x the speed of QDQ with int8 activations, measured here on ResNet50),
    calibrated on *calibration* (min/max); returns the quantized file."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnxruntime as ort
    name = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    items = iter([{name: np.asarray(preprocess(img[None].astype(np.float32)), np.float32)}
                  for img in calibration])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(items, None)
    prepared = os.path.join(folder, "model.prep.onnx")
    quant_pre_process(path, prepared, skip_symbolic_shape=True)
    out = os.path.join(folder, "model.int8.onnx")
    quantize_static(prepared, out, Reader(), quant_format=QuantFormat.QOperator,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return out


# --------------------------------------------------------------------------- measuring

def run_all(engine, images, batch):
    return np.concatenate([engine.run(images[i:i + batch])
                           for i in range(0, len(images), batch)])


def digits_data(folder, per_class, size, seed=0):
    """The digits as (uint8 images at *size*, labels), files sorted by path."""
    from sparkdl_magics.datasets import write_digits
    from sparkdl_magics.imaging import decode_array
    write_digits(folder, per_class=per_class, seed=seed)
    files = sorted(Path(folder).glob("*/*.png"))
    images = np.stack([decode_array(f.read_bytes(), size) for f in files])
    return images, np.array([f.parent.name for f in files])


def accuracy(features, labels, split):
    """Test accuracy of a logistic regression trained on the split's train part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    train, test = split
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(features[train], labels[train])
    return float(np.mean(clf.predict(features[test]) == labels[test]))


def versions():
    out = []
    for module in ("tensorflow", "keras", "openvino", "nncf", "onnxruntime", "tf2onnx"):
        try:
            out.append(f"{module} {__import__(module).__version__.split('-')[0]}")
        except ImportError:
            out.append(f"{module} missing")
    return ", ".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ResNet50")
    ap.add_argument("--weights", default=None, help="imagenet, trained-like, none, or a "
                    "file [default: imagenet if cached, else trained-like]")
    ap.add_argument("--images", type=int, default=128, help="timed images (pre-decoded)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument("--calibration", type=int, default=128,
                    help="int8 calibration images (apart from the timed ones)")
    ap.add_argument("--digits-per-class", type=int, default=100,
                    help="digits per class for the accuracy check (0 to skip)")
    ap.add_argument("--engines", default="openvino,onnxruntime,int8",
                    help="which engines besides TensorFlow and ours (comma-separated: "
                    "openvino, onnxruntime, int8)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                      "sparkdl_bench_engines"))
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    wanted = {e.strip() for e in args.engines.split(",") if e.strip()}
    import tensorflow as tf  # its threads before anything (the weights helper) starts it
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    weights, weights_label = choose_weights(args.weights, args.model, args.workdir)
    print(f"{args.model} ({weights_label} weights), model only, {args.images} photo-like "
          f"images, batch {args.batch_size}, {args.threads} threads, median of "
          f"{args.repeat} interleaved rounds", flush=True)
    print(f"  {versions()}", flush=True)

    from trained_like import photo_like_images
    base, engines = keras_engines(args.model, weights)
    width, height = base.input_size
    assert width == height, "photo_like_images makes square images"
    images = photo_like_images(args.images, width, seed=1)
    calibration = photo_like_images(args.calibration, width, seed=2)
    folder = tempfile.mkdtemp(prefix=f"{args.model}-", dir=args.workdir)
    preprocess = base.preprocess

    ov_model = onnx_path = None
    if wanted & {"openvino", "int8"}:
        try:
            ov_model = openvino_model(base.model, folder)
        except Exception as exc:  # an engine that cannot run here is reported, not fatal
            skipped("OpenVINO", exc)
    if ov_model is not None and "openvino" in wanted:
        for precision in (F32, BF16):
            engines += openvino_engines(ov_model, preprocess, precision, args.threads)
    if wanted & {"onnxruntime", "int8"}:
        try:
            onnx_path = onnx_file(base.model, folder)
        except Exception as exc:
            skipped("ONNX export", exc)
    if onnx_path and "onnxruntime" in wanted:
        try:
            engines.append(onnxruntime_engine(onnx_path, preprocess, F32, args.threads))
        except Exception as exc:
            skipped("ONNX Runtime", exc)

    def int8_engines(calib, hints=OV_HINTS):
        """(int8 engines, seconds each quantization took), calibrated on *calib*."""
        out, took = [], {}
        if ov_model is not None:
            try:
                t = time.perf_counter()
                quantized = nncf_int8(ov_model, preprocess, calib)
                took["OpenVINO+NNCF"] = time.perf_counter() - t
                out += openvino_engines(quantized, preprocess, INT8, args.threads, hints,
                                        "OpenVINO+NNCF")
            except Exception as exc:
                skipped("OpenVINO+NNCF int8", exc)
        if onnx_path:
            try:
                t = time.perf_counter()
                path = onnxruntime_int8(onnx_path, preprocess, calib,
                                        tempfile.mkdtemp(dir=folder))
                took["ONNX Runtime"] = time.perf_counter() - t
                out.append(dataclasses.replace(
                    onnxruntime_engine(path, preprocess, INT8, args.threads),
                    note="static, QOperator u8s8, per channel, min/max"))
            except Exception as exc:
                skipped("ONNX Runtime int8", exc)
        return out, took

    if "int8" in wanted:
        quantized, took = int8_engines(calibration)
        engines += quantized
        print(f"  int8 quantization on {len(calibration)} calibration images: "
              + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()), flush=True)

    for engine in engines:  # warm-up: graph tracing, compilation, first-call allocations
        engine.run(images[:args.batch_size])
    for _ in range(args.repeat):
        for engine in engines:
            t = time.perf_counter()
            engine.features = run_all(engine, images, args.batch_size)
            engine.runs.append(time.perf_counter() - t)

    rate = {e.label: len(images) / statistics.median(e.runs) for e in engines}
    ref, ours = engines[0], engines[1]
    ids = range(len(images))
    cos = {e.label: cosines(dict(zip(ids, ref.features)), dict(zip(ids, e.features)))
           for e in engines}
    print(f"  {'engine':<27} {'precision':<9} {'images/s':>8} {'x TF f32':>8} "
          f"{'x ours bf16':>11} {'cosine min':>10} {'median':>8}  runs (s); notes")
    for e in engines:
        r = rate[e.label]
        print(f"  {e.name:<27} {e.precision:<9} {r:8.2f} {r / rate[ref.label]:8.2f} "
              f"{r / rate[ours.label]:11.2f} {cos[e.label].min():10.6f} "
              f"{np.median(cos[e.label]):8.6f}  {', '.join(f'{t:.2f}' for t in e.runs)}; "
              f"{e.note}", flush=True)

    digits = {}
    if args.digits_per_class:
        from sklearn.model_selection import train_test_split
        x, y = digits_data(os.path.join(args.workdir, f"digits_{args.digits_per_class}"),
                           args.digits_per_class, base.input_size)
        split = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)
        rng = np.random.default_rng(0)
        calib = x[rng.permutation(split[0])[:args.calibration]]
        runs = engines[:2]
        if "int8" in wanted:
            runs += int8_engines(calib, hints=("LATENCY",))[0]
        for e in runs:
            digits[e.name.split(" (")[0], e.precision] = accuracy(
                run_all(e, x, args.batch_size), y, split)
        top = digits["TensorFlow", F32]
        print(f"digits, logistic regression on {args.model} features ({len(split[1])} test "
              f"images; int8 recalibrated on {len(calib)} digits of the training split): "
              + ", ".join(f"{n} {p} {a:.4f} ({(a - top) * 100:+.1f} points)"
                          for (n, p), a in digits.items()), flush=True)

    # the decision rules
    others = [e for e in engines[2:] if e.precision != INT8]
    if others:
        best = max(others, key=lambda e: rate[e.label])
        fast = [e for e in others if rate[e.label] >= 1.2 * rate[ours.label]
                and cos[e.label].min() >= 0.999]
        print(f"(a) an engine >= 1.2x ours bfloat16 with min cosine >= 0.999: "
              f"{'YES: ' + ', '.join(e.label for e in fast) if fast else 'no'} (fastest: "
              f"{best.label} {rate[best.label] / rate[ours.label]:.2f}x ours bfloat16, min "
              f"cosine {cos[best.label].min():.6f}; ours bfloat16 itself: min cosine "
              f"{cos[ours.label].min():.6f})")
    int8 = [e for e in engines if e.precision == INT8]
    if int8:
        verdicts = []
        for e in int8:
            speed = rate[e.label] / rate[ours.label]
            acc = digits.get((e.name.split(" (")[0], INT8))
            points = None if acc is None else (acc - digits["TensorFlow", F32]) * 100
            ok = speed >= 1.5 and cos[e.label].min() >= 0.98 and \
                points is not None and points >= -1.0
            verdicts.append(f"{e.name}: {'YES' if ok else 'no'} ({speed:.2f}x ours bfloat16, "
                            f"min cosine {cos[e.label].min():.4f}, digits "
                            + ("not measured" if points is None else f"{points:+.1f} points")
                            + ")")
        print("(b) int8 >= 1.5x ours bfloat16, min cosine >= 0.98, digits within 1 point of "
              "float32: " + "; ".join(verdicts))
    shutil.rmtree(folder, ignore_errors=True)  # exported and quantized models: ~300 MB


if __name__ == "__main__":
    main()
