"""Writes the small ONNX models Sluice's model tests run, and checks each.

    python make_test_models.py OUT_DIR

The models are tiny and hand-written (onnx.helper) so that the expected
results of CREATE MODEL / ML_PREDICT tests can be worked out by hand; each is
run through onnxruntime here so that a model which does not load or compute
what README.txt says fails the install, not a SQL test later.
"""

import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# Opset 17 / IR 8 are old enough for any onnxruntime Sluice may load and new
# enough for every operator used here (ReduceMean still takes `axes` as an
# attribute in 17; it became an input in 18).
OPSET = 17
IR_VERSION = 8

F32, F64, I64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64


def save(out_dir, name, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="sluice-make-test-models",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(out_dir, name + ".onnx")
    onnx.save(model, path)
    return path


def const(name, values, dtype):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def session(path, quiet=False):
    opts = ort.SessionOptions()
    if quiet:
        opts.log_severity_level = 4  # the expected failure below is not news
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def linear(out_dir):
    path = save(
        out_dir,
        "linear",
        [
            # [N,2] @ [2,1] then squeeze: MatMul with a 1-D right operand
            # fails in onnxruntime for N = 0 ("cannot broadcast on dim 0").
            helper.make_node("MatMul", ["features", "w"], ["xw"]),
            helper.make_node("Squeeze", ["xw", "axis1"], ["xw1"]),
            helper.make_node("Add", ["xw1", "bias"], ["score"]),
            helper.make_node("Greater", ["score", "bias"], ["gt"]),
            helper.make_node("Cast", ["gt"], ["label"], to=I64),
        ],
        [helper.make_tensor_value_info("features", F32, ["N", 2])],
        [
            helper.make_tensor_value_info("score", F32, ["N"]),
            helper.make_tensor_value_info("label", I64, ["N"]),
        ],
        [
            const("w", [[0.5], [-0.25]], np.float32),
            const("axis1", [1], np.int64),
            const("bias", 1.0, np.float32),
        ],
    )
    x = np.array([[1, 0], [0, 1], [2, 4], [0, 0], [4, 2]], dtype=np.float32)
    score, label = session(path).run(None, {"features": x})
    want = x @ np.array([0.5, -0.25], dtype=np.float32) + 1.0
    assert np.allclose(score, want) and score.dtype == np.float32, score
    assert label.tolist() == [1, 0, 0, 0, 1] and label.dtype == np.int64, label
    # N = 0 must work too: ML_PREDICT may see an empty batch.
    score, label = session(path).run(None, {"features": np.zeros((0, 2), np.float32)})
    assert score.shape == (0,) and label.shape == (0,)


def two_inputs(out_dir):
    path = save(
        out_dir,
        "two_inputs",
        [
            helper.make_node("Cast", ["a"], ["a64"], to=F64),
            helper.make_node("Cast", ["b"], ["b64"], to=F64),
            helper.make_node("Add", ["a64", "b64"], ["total"]),
            helper.make_node("Mul", ["b", "two"], ["doubled"]),
        ],
        [
            helper.make_tensor_value_info("a", F32, ["N"]),
            helper.make_tensor_value_info("b", I64, ["N"]),
        ],
        [
            helper.make_tensor_value_info("total", F64, ["N"]),
            helper.make_tensor_value_info("doubled", I64, ["N"]),
        ],
        [const("two", 2, np.int64)],
    )
    a = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    b = np.array([1, 2, -7], dtype=np.int64)
    total, doubled = session(path).run(None, {"a": a, "b": b})
    assert total.dtype == np.float64 and total.tolist() == [1.5, 0.75, -4.0], total
    assert doubled.dtype == np.int64 and doubled.tolist() == [2, 4, -14], doubled


def gather(out_dir):
    path = save(
        out_dir,
        "gather",
        [helper.make_node("Gather", ["table", "idx"], ["value"], axis=0)],
        [helper.make_tensor_value_info("idx", I64, ["N"])],
        [helper.make_tensor_value_info("value", F32, ["N"])],
        [const("table", [10, 20, 30], np.float32)],
    )
    sess = session(path, quiet=True)
    (value,) = sess.run(None, {"idx": np.array([0, 2, 1, -1], dtype=np.int64)})
    assert value.tolist() == [10, 30, 20, 30], value  # negative indices count from the end
    # The point of this model: a run-time failure the SQL layer must report.
    try:
        sess.run(None, {"idx": np.array([0, 5], dtype=np.int64)})
    except Exception as e:  # onnxruntime raises its own exception types
        print(f"    gather idx=5 fails as intended: {str(e).splitlines()[0][:160]}")
    else:
        raise AssertionError("gather.onnx did not fail for an out-of-range index")


def channel_mean(out_dir):
    path = save(
        out_dir,
        "channel_mean",
        [helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[2, 3], keepdims=0)],
        [helper.make_tensor_value_info("pixels", F32, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("mean", F32, ["N", 3])],
    )
    sess = session(path)
    for h, w in [(2, 2), (5, 7)]:
        x = np.arange(2 * 3 * h * w, dtype=np.float32).reshape(2, 3, h, w)
        (mean,) = sess.run(None, {"pixels": x})
        assert mean.shape == (2, 3) and np.allclose(mean, x.mean(axis=(2, 3))), mean


def logreg_iris(out_dir):
    # Shipped with the wheel; a real converted (skl2onnx) classifier with
    # ZipMap output, copied only so tests can see how Sluice treats one.
    src = os.path.join(os.path.dirname(ort.__file__), "datasets", "logreg_iris.onnx")
    path = os.path.join(out_dir, "logreg_iris.onnx")
    shutil.copyfile(src, path)
    return path


def describe(path):
    sess = session(path)
    ins = [f"{i.name} {i.type} {i.shape}" for i in sess.get_inputs()]
    outs = [f"{o.name} {o.type} {o.shape}" for o in sess.get_outputs()]
    return ins, outs


FORMULAS = {
    "linear": "score = features @ [0.5, -0.25] + 1.0;  label = 1 if score > 1.0 else 0",
    "two_inputs": "total = double(a) + double(b);  doubled = 2 * b",
    "gather": "value = [10, 20, 30][idx] (negative idx counts from the end; "
    "idx >= 3 or < -3 is a run-time error)",
    "channel_mean": "mean[n, c] = mean of pixels[n, c, :, :]  (an image-model stand-in)",
    "logreg_iris": "scikit-learn logistic regression on iris, copied from the onnxruntime "
    "wheel (onnxruntime/datasets/); the batch is fixed at 3 rows and probabilities is a "
    "ZipMap (a sequence of maps), not a tensor",
}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_test_models.py OUT_DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for build in (linear, two_inputs, gather, channel_mean, logreg_iris):
        build(out_dir)

    lines = [
        "Sluice test models, written by sql-tests/models/make_test_models.py",
        f"(onnx {onnx.__version__}, opset {OPSET}, IR {IR_VERSION}; checked with "
        f"onnxruntime {ort.__version__}). N, H, W are dynamic dimensions.",
        "",
    ]
    for name, formula in FORMULAS.items():
        ins, outs = describe(os.path.join(out_dir, name + ".onnx"))
        lines.append(f"{name}.onnx")
        lines += [f"  input  {s}" for s in ins]
        lines += [f"  output {s}" for s in outs]
        lines.append(f"  {formula}")
        lines.append("")
        print(f"    {name}.onnx: in {'; '.join(ins)} | out {'; '.join(outs)}")
    with open(os.path.join(out_dir, "README.txt"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
