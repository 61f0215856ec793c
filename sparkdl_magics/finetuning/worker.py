"""One training worker: a fresh Python process started by a barrier task.

Why a process of its own: ``MultiWorkerMirroredStrategy`` must configure TensorFlow's
collective ops before TensorFlow's runtime starts, once per process, and Spark reuses
its Python workers (which may already have run a model, or an earlier fine-tuning
with other ports). The task starts ``python -m sparkdl_magics.finetuning.worker job.json``
with ``TF_CONFIG`` set, and the process dies with its task (see :mod:`.task`).

The training loop is a custom step (Keras 3's ``model.fit`` does not run under
``MultiWorkerMirroredStrategy``): ``strategy.run`` over a ``GradientTape`` step whose loss
is ``tf.nn.compute_average_loss`` over the global batch, gradients all-reduced by the
strategy, applied by one optimizer for the head and one (lower learning rate) for the
unfrozen backbone layers. Every worker runs the same number of steps (its partition is
cycled to the longest one's length), or the collectives would wait forever. Images are
decoded (and augmented, seeded) per batch from the compressed bytes.

Records (JSON lines, in ``log``): ``epoch`` (loss/accuracy train and validation, seconds,
images), ``step`` checksums when asked, ``weights`` (the epoch's weights checksum),
``done``. The chief also appends its epoch records to ``live_log`` (a file the driver
reads while training, when it shares this filesystem) and saves the model file.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any, Dict, List, Tuple

import numpy as np


def weights_checksum(variables: List[Any]) -> str:
    """sha1 of the variables' bytes: equal on every worker iff the weights are identical."""
    digest = hashlib.sha1()
    for v in variables:
        digest.update(np.ascontiguousarray(np.asarray(v)).tobytes())
    return digest.hexdigest()[:16]


def _or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


class Log:
    """The worker's records: its own file, and (chief) the driver's live file."""

    def __init__(self, path: str, live: str = ""):
        self._file = open(path, "a", encoding="utf-8")
        self._live = live

    def write(self, record: Dict[str, Any], live: bool = False) -> None:
        line = json.dumps(record) + "\n"
        self._file.write(line)
        self._file.flush()
        if live and self._live:
            try:
                with open(self._live, "a", encoding="utf-8") as out:
                    out.write(line)
            except OSError:  # the driver's folder is not on this machine: reported after
                self._live = ""


def main(job_path: str) -> int:
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ..tfimport import import_keras
    keras = import_keras()
    import tensorflow as tf
    threads = int(job.get("threads") or 1)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_op_determinism()  # same seed, same weights (see Trainer)
    log = Log(job["log"], job.get("live_log", "") if job["rank"] == 0 else "")
    if int(job["workers"]) > 1:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING,
            timeout_seconds=float(job.get("timeout_s", 600)))
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    else:
        strategy = tf.distribute.get_strategy()
    Trainer(job, strategy, keras, tf, log).run()
    return 0


class Trainer:
    """The loop: epochs of equal step counts, metrics all-reduced once per epoch.

    Linear probe, then fine-tune: the head starts from a fitted logistic regression
    (``probe`` in the job) or is first trained alone on the frozen backbone's features
    (``head_epochs``: computed once, then epochs of the head until the validation loss
    stops improving for ``head_patience`` epochs, the best head kept). Before the first
    fine-tuning epoch the whole network is validated ("epoch 0": the probe itself), and
    early stopping keeps the best of epochs 0..N, so the result is never worse on the
    validation images than the probe it started from.

    Same seed, same weights: TensorFlow's op determinism is on; the head starts from the
    seed; each worker's rows are sorted by path, then shuffled by (seed, epoch, rank)
    and augmented by (seed, path, epoch); the all-reduce is a ring in rank order (a fixed
    summation order); which worker trains on which image is a hash of its path (see
    ``driver._stage_input``), so it does not depend on the input's partitioning. The
    paths are part of the data: the same images under another folder give another
    split and share.
    """

    def __init__(self, job: Dict[str, Any], strategy: Any, keras: Any, tf: Any, log: Log):
        import pandas as pd

        from ..augment import Augmentation
        from ..inference import preprocess_function
        from .network import NetworkSpec, build
        self.job, self.strategy, self.keras, self.tf, self.log = job, strategy, keras, tf, log
        self.rank = int(job["rank"])
        self.seed = int(job["seed"])
        self.batch = int(job["batch_size"])
        self.global_batch = self.batch * int(job["workers"])
        self.spec = NetworkSpec.from_dict(job["network"])
        self.preprocess = preprocess_function(self.spec.preprocess)
        self.augment = Augmentation(**job["augment"]) if job.get("augment") else None
        # by path: the order Spark delivered the partition's rows in is not the data's
        frame = pd.read_parquet(job["data"]).sort_values("path", kind="stable")
        val = frame["validation"].to_numpy(bool)
        self.train, self.val = frame[~val].reset_index(drop=True), frame[val].reset_index(drop=True)
        keras.utils.set_random_seed(self.seed)  # same head initialisation on every worker
        with strategy.scope():
            self.net = build(self.spec)
            self.opt_head = keras.optimizers.Adam(float(job["learning_rate"]))
            self.opt_backbone = keras.optimizers.Adam(float(job["backbone_learning_rate"]))
            # the head alone on fixed features: a convex fit for a linear head, larger steps
            self.opt_warm = keras.optimizers.Adam(float(job["learning_rate"])
                                                  * float(job.get("head_lr_factor") or 1.0))
        self.skipped: set = set()  # paths of files that did not decode
        self._step = self._make_step()
        self._head_step = self._make_head_step()
        self._sum = self._make_sum()

    # ---- tf functions
    def _make_step(self) -> Any:
        """A step of the whole network: the head and the unfrozen backbone layers, each
        with its optimizer."""
        net = self.net
        return self._step_function(net.model, [(self.opt_head, net.head_variables),
                                               (self.opt_backbone, net.backbone_variables)])

    def _make_head_step(self) -> Any:
        """A step of the head alone on precomputed features (the backbone frozen)."""
        return self._step_function(self.net.head, [(self.opt_warm, self.net.head_variables)])

    def _step_function(self, forward: Any, groups: List[Any]) -> Any:
        """``step(x, y)``: the loss over the global batch, its gradients all-reduced and
        applied by each (optimizer, variables) group; returns (loss sum, correct) summed
        over the workers."""
        tf, keras, strategy = self.tf, self.keras, self.strategy
        groups = [(opt, list(variables)) for opt, variables in groups if variables]
        variables = [v for _, vs in groups for v in vs]
        global_batch = self.global_batch

        def replica_step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                probs = forward(x, training=True)
                per_example = keras.losses.sparse_categorical_crossentropy(y, probs)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            grads = tape.gradient(loss, variables)
            start = 0
            for opt, vs in groups:
                opt.apply_gradients(zip(grads[start:start + len(vs)], vs))
                start += len(vs)
            correct = tf.reduce_sum(tf.cast(
                tf.equal(tf.argmax(probs, axis=-1, output_type=tf.int32), y), tf.float32))
            return tf.stack([tf.reduce_sum(per_example), correct])

        @tf.function
        def step(x: Any, y: Any) -> Any:
            sums = strategy.run(replica_step, args=(x, y))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)
        return step

    def _make_sum(self) -> Any:
        tf, strategy = self.tf, self.strategy

        @tf.function
        def all_sum(values: Any) -> Any:  # one collective: the sum over workers
            per_replica = strategy.run(lambda v: tf.identity(v), args=(values,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return all_sum

    # ---- data
    def _images(self, rows: Any, epoch: int, augment: bool) -> Any:
        """(preprocessed images, their labels) of the rows that decode; the others are
        counted in ``self.skipped`` by path (a file that cannot be read trains nothing)."""
        from ..imaging import decode_array
        size = self.spec.input_size
        arrays, labels = [], []
        for content, path, label in zip(rows["content"], rows["path"], rows["label"]):
            try:
                array = decode_array(content, size)
            # Broad on purpose: decoding reads one user file (Pillow raises many types);
            # whatever fails is that file's, never the training's.
            except Exception:  # noqa: BLE001
                self.skipped.add(str(path))
                continue
            if augment and self.augment is not None:
                flip, angle = self.augment.params(self.seed, str(path), epoch + 1)
                array = self.augment.apply(array, flip, angle)
            arrays.append(array)
            labels.append(int(label))
        w, h = size
        batch = np.stack(arrays) if arrays else np.zeros((0, h, w, 3), np.uint8)
        return self.preprocess(batch.astype(np.float32)), np.asarray(labels, np.int32)

    def _order(self, epoch: int, rows: int = -1, phase: int = 0) -> np.ndarray:
        """This epoch's row order: shuffled (seeded), cycled to steps x batch rows."""
        need = int(self.job["steps"]) * self.batch
        rows = len(self.train) if rows < 0 else rows
        rng = np.random.default_rng([self.seed, epoch, self.rank, phase])
        order: List[int] = []
        while len(order) < need and rows:
            order.extend(rng.permutation(rows).tolist())
        return np.asarray(order[:need], dtype=np.int64)

    def _features(self, frame: Any) -> Any:
        """(pooled backbone features, labels) of *frame*'s rows that decode, unaugmented."""
        feats, labels = [], []
        for start in range(0, len(frame), self.batch):
            x, y = self._images(frame.iloc[start:start + self.batch], 0, augment=False)
            if len(y):
                feats.append(np.asarray(self.net.features(x, training=False), np.float32))
                labels.append(y)
        if not feats:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int32)
        return np.concatenate(feats), np.concatenate(labels)

    # ---- the loop
    def run(self) -> None:
        job, tf = self.job, self.tf
        epochs, patience = int(job["epochs"]), job.get("patience")
        model = self.net.model
        self.log.write({"kind": "data", "rank": self.rank, "train": len(self.train),
                        "validation": len(self.val)})
        if job.get("batchnorm") == "adapt":
            self._adapt_batchnorm()
        if job.get("probe"):
            self.net.set_probe(job["probe"]["kernel"], job["probe"]["bias"])
        if job.get("warmup") == "probe":
            self._fit_probe()
        elif job.get("head_epochs"):
            self._warm_up(int(job["head_epochs"]), int(job.get("head_patience") or 1))
        best, best_weights, best_epoch, waited = None, None, None, 0
        if patience is not None:
            totals = self._all_sum(self._validate())
            if totals[2] > 0:  # epoch 0: the network as it starts (the probe, when one is)
                best, best_epoch = totals[0] / totals[2], 0
                best_weights = [np.asarray(w) for w in model.get_weights()]
                self.log.write({"kind": "epoch", "rank": self.rank, "epoch": 0,
                                "val_loss": best, "val_accuracy": totals[1] / totals[2],
                                "checksum": weights_checksum(model.weights)})
        for epoch in range(epochs):
            started = time.perf_counter()
            sums = np.zeros(2, np.float64)
            order = self._order(epoch)
            for s in range(int(job["steps"])):
                rows = self.train.iloc[order[s * self.batch:(s + 1) * self.batch]]
                x, y = self._images(rows, epoch, augment=True)
                sums += np.asarray(self._step(tf.constant(x), tf.constant(y)), np.float64)
                if job.get("trace_steps"):
                    self.log.write({"kind": "step", "rank": self.rank, "epoch": epoch + 1,
                                    "step": s + 1, "checksum": weights_checksum(model.weights)})
            train_seconds = time.perf_counter() - started
            totals = self._all_sum(np.concatenate([self._validate(), [train_seconds]]))
            images = int(job["steps"]) * self.global_batch
            record = {"kind": "epoch", "rank": self.rank, "epoch": epoch + 1,
                      "loss": sums[0] / images, "accuracy": sums[1] / images,
                      "images": images, "seconds": round(train_seconds, 3),
                      "images_per_s_per_worker": round(images / int(job["workers"])
                                                       / max(totals[3] / int(job["workers"]),
                                                             1e-9), 2)}
            if totals[2] > 0:
                record.update(val_loss=totals[0] / totals[2], val_accuracy=totals[1] / totals[2])
            record["checksum"] = weights_checksum(model.weights)
            record["skipped"] = len(self.skipped)
            self.log.write(record, live=True)
            if patience is not None and totals[2] > 0:
                if best is None or record["val_loss"] < best - 1e-6:
                    best, best_epoch, waited = record["val_loss"], epoch + 1, 0
                    best_weights = [np.asarray(w) for w in model.get_weights()]
                else:
                    waited += 1
                    if waited >= int(patience):
                        self.log.write({"kind": "stopped", "rank": self.rank,
                                        "epoch": epoch + 1, "best_val_loss": best}, live=True)
                        break
        if best_weights is not None:
            model.set_weights(best_weights)
            self.log.write({"kind": "best", "rank": self.rank, "epoch": best_epoch,
                            "val_loss": best})
        if self.rank == 0:
            self._save()
        self.log.write({"kind": "done", "rank": self.rank, "skipped": sorted(self.skipped),
                        "checksum": weights_checksum(model.weights)})

    def _all_sum(self, values: Any) -> np.ndarray:
        return np.asarray(self._sum(self.tf.constant(np.asarray(values, np.float64))), np.float64)

    def _fit_probe(self) -> None:
        """The linear head as a converged logistic regression on the frozen backbone's
        features (:mod:`.linear_probe`): the chief fits it on every worker's features and
        all workers take its coefficients (the same head everywhere)."""
        from .linear_probe import fit_linear_probe
        x_train, y_train = self._gather(*self._features(self.train))
        x_val, y_val = self._gather(*self._features(self.val))
        classes = self.spec.num_classes
        width = x_train.shape[1]
        mine = np.zeros(width * classes + classes + 3, np.float64)
        if self.rank == 0:
            fitted = fit_linear_probe(x_train, y_train, x_val, y_val, classes, self.seed)
            mine[:] = np.concatenate([np.ravel(fitted["kernel"]), fitted["bias"],
                                      [fitted["C"], _or_nan(fitted["val_loss"]),
                                       _or_nan(fitted["val_accuracy"])]])
        got = self._all_sum(mine)  # the chief's values, the others' zeros
        kernel = got[:width * classes].reshape(width, classes)
        bias, (c, val_loss, val_accuracy) = got[width * classes:-3], got[-3:]
        self.net.set_probe(kernel, bias)
        record = {"kind": "warmup", "rank": self.rank, "epoch": 1, "probe_C": float(c),
                  "train": int(len(y_train))}
        if not np.isnan(val_loss):
            record.update(val_loss=float(val_loss), val_accuracy=float(val_accuracy))
        self.log.write(record)

    def _gather(self, features: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Every worker's (features, labels), in rank order, on every worker (one sum of
        zero-padded blocks: exact, since each value meets only zeros)."""
        width = int(self.net.features.output.shape[-1])
        workers = int(self.job["workers"])
        counts = np.zeros(workers, np.float64)
        counts[self.rank] = len(labels)
        counts = self._all_sum(counts).astype(np.int64)
        start = int(counts[:self.rank].sum())
        block = np.zeros((int(counts.sum()), width + 1), np.float64)
        if len(labels):
            block[start:start + len(labels), :width] = features
            block[start:start + len(labels), width] = labels
        block = self._all_sum(block)
        return block[:, :width].astype(np.float32), block[:, width].astype(np.int32)

    def _warm_up(self, max_epochs: int, patience: int) -> None:
        """Train the head alone on the frozen backbone's features until the validation
        loss stops improving (*patience* epochs), at most *max_epochs*; keep the best."""
        tf = self.tf
        f_train, y_train = self._features(self.train)
        f_val, y_val = self._features(self.val)
        head_vars = self.net.head_variables
        best, best_head, waited = None, None, 0
        for epoch in range(max_epochs):
            order = self._order(epoch, len(y_train), phase=1)
            sums = np.zeros(2, np.float64)
            for s in range(int(self.job["steps"])):
                idx = order[s * self.batch:(s + 1) * self.batch]
                sums += np.asarray(self._head_step(tf.constant(f_train[idx]),
                                                   tf.constant(y_train[idx])), np.float64)
            local = np.zeros(3, np.float64)
            if len(y_val):
                probs = np.asarray(self.net.head(tf.constant(f_val), training=False), np.float64)
                p = np.clip(probs[np.arange(len(y_val)), y_val], 1e-7, 1.0)
                local[:] = [-np.log(p).sum(), (probs.argmax(axis=1) == y_val).sum(), len(y_val)]
            totals = self._all_sum(local)
            images = int(self.job["steps"]) * self.global_batch
            record = {"kind": "warmup", "rank": self.rank, "epoch": epoch + 1,
                      "loss": sums[0] / images, "accuracy": sums[1] / images}
            if totals[2] > 0:
                record.update(val_loss=totals[0] / totals[2], val_accuracy=totals[1] / totals[2])
            self.log.write(record)
            score = record.get("val_loss", record["loss"])
            if best is None or score < best - 1e-4 * max(abs(best), 1.0):
                best, waited = score, 0
                best_head = [np.asarray(v) for v in head_vars]
            else:
                waited += 1
                if waited >= patience:
                    break
        if best_head is not None:
            for var, value in zip(head_vars, best_head):
                var.assign(value)

    def _adapt_batchnorm(self) -> None:
        """BatchNorm's moving statistics re-estimated on the training images (summed
        over the workers, so every worker sets the same values)."""
        from .network import adapt_batchnorm
        order = self._order(0, phase=2)

        def batches() -> Any:  # the same count on every worker: the reduce is collective
            for s in range(int(self.job["steps"])):
                x, _ = self._images(self.train.iloc[order[s * self.batch:(s + 1) * self.batch]],
                                    0, augment=False)
                if len(x):
                    yield x
        layers = adapt_batchnorm(self.net.backbone, batches, reduce=self._all_sum)
        self.log.write({"kind": "batchnorm", "rank": self.rank, "layers": layers})

    def _validate(self) -> np.ndarray:
        """(loss sum, correct, count) on this worker's validation rows (no collectives)."""
        out = np.zeros(3, np.float64)
        for start in range(0, len(self.val), self.batch):
            rows = self.val.iloc[start:start + self.batch]
            x, y = self._images(rows, 0, augment=False)
            if len(y) == 0:
                continue
            probs = np.asarray(self.net.model(x, training=False), np.float64)
            p = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
            out += [float(-np.log(p).sum()), float((probs.argmax(axis=1) == y).sum()), len(y)]
        return out

    def _save(self) -> None:
        """The trained model as a plain Keras file (built again outside the strategy)."""
        from .network import build
        weights = self.net.model.get_weights()
        plain = build(self.spec).model
        plain.set_weights(weights)
        plain.save(self.job["model_out"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
