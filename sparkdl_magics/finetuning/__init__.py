"""Fine-tuning a network on the cluster, data-parallel (what ``%%finetune`` calls).

``finetune(images, model="MobileNetV3Small", unfreeze=20, epochs=5)`` trains a new head
(and, with ``unfreeze``, the top of the backbone) on the train split of an ImageSet. The
training is one Spark *barrier* stage (``mapInPandas(..., barrier=True)``, classic and
Connect): its ``workers`` tasks form one ``MultiWorkerMirroredStrategy`` cluster, each
reading only its own partition of compressed images, gradients all-reduced every step
(:mod:`.task`, :mod:`.worker`). Images never come to the driver; the chief task returns
the trained ``.keras`` file (a few MB) and every task its per-epoch records as rows.

The result is a :class:`~sparkdl_magics.results.FineTunedModel`: a FittedModel whose
pipeline applies the Keras file through the batch runner (:mod:`.stage`), so
``evaluate``, ``predict``, ``save`` / ``load_model`` take it like any fitted model.

Live progress: the chief appends each epoch's metrics to a file in a driver folder;
where the workers share the driver's filesystem (local and local-cluster masters, a
Connect server on this machine) the driver reads it while the stage runs and calls
``on_epoch``; elsewhere the epochs are reported when the stage ends.

Modules, one job each: :mod:`.driver` (``finetune``: check, ship, run, collect),
:mod:`.options` (the options and their checks), :mod:`.probe` (a head started from a
fitted logistic regression), :mod:`.network` (backbone + head), :mod:`.task` (the
barrier task), :mod:`.worker` (the training loop), :mod:`.live` (epochs shown while it
runs), :mod:`.result` (the FineTunedModel), :mod:`.stage` / :mod:`.saved` (serving and
saving the trained file), :mod:`.cluster` (TF_CONFIG, worker counts).

(A package named ``finetuning``, not ``finetune``: ``sparkdl_magics.finetune`` is the
public function, which a submodule of that name would shadow.)
"""
from __future__ import annotations

from .driver import finetune
from .options import check_learning_rate
from .result import checksum_frame, history_frame

__all__ = ["finetune", "check_learning_rate", "history_frame", "checksum_frame"]
