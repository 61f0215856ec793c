"""Defaults shared by the public API, the magics, the app and the Spark ML stages.

Each default is declared here once; function signatures, ``Param`` defaults and magic
option declarations all read it from here, so they cannot drift apart. Plain constants
only: importing this module costs nothing (``%load_ext`` imports it).
"""
from __future__ import annotations

#: The registry model used when none is named (Deep Learning Pipelines' default too).
MODEL = "InceptionV3"
#: Where ImageNet weights come from when not said: Keras' cache (or its download).
WEIGHTS = "imagenet"
#: What the notebooks and the app use: ImageNet when available, else the untrained
#: fallback with a one-line warning (offline machines, CI).
WEIGHTS_OFFLINE_SAFE = "auto"
#: Images per model call inside a Spark task.
BATCH_SIZE = 32
#: Images per model call on a GPU when ``batch_size`` is left at its default.
GPU_BATCH_SIZE = 128
#: The number type a model runs in: float32, bfloat16, float16 or auto (see precision.py).
PRECISION = "float32"
#: What runs the model on the workers: keras, openvino or auto (see engines.py). Keras:
#: converting to OpenVINO costs seconds per worker and changes features by float rounding.
ENGINE = "keras"
#: Rows per model call for tensor (array column) inputs: rows are small.
TENSOR_BATCH_SIZE = 256
#: Classes returned per image by top-K prediction.
TOP_K = 5
#: Seed for sampling, splitting, augmentation and model initialisation.
SEED = 42
#: The train fraction of a load.
SPLIT = 0.8
#: The MLlib classifier trained when none is named.
CLASSIFIER = "logistic_regression"
#: The metric a grid is tuned on.
METRIC = "f1"
#: Folds used when a grid is given without ``folds`` or ``validation``.
FOLDS = 3
#: Most confidently misclassified images kept by an evaluation.
TOP_ERRORS = 12
#: A multi-label model predicts a label when its probability is at least this.
MULTI_LABEL_THRESHOLD = 0.5
#: Images a heatmap explanation shows (mistakes first when labels are known).
EXPLAIN_IMAGES = 12
#: Heatmap opacity over the image in an explanation's overlays.
EXPLAIN_ALPHA = 0.5
#: Occlusion heatmaps: patch positions per side (7 x 7 patches, 50 backbone passes an image).
OCCLUSION_GRID = 7
#: Fine-tuning (``%%finetune``): the backbone, epochs, images per step per worker, the
#: head's learning rate (the unfrozen backbone layers train at a tenth of it by default),
#: the head's dropout, and the epochs without a better validation loss before stopping.
FINETUNE_MODEL = "MobileNetV3Small"
FINETUNE_EPOCHS = 5
FINETUNE_BATCH_SIZE = 16
FINETUNE_LEARNING_RATE = 1e-3
FINETUNE_BACKBONE_LR_FACTOR = 0.1
FINETUNE_DROPOUT = 0.2
FINETUNE_PATIENCE = 2
#: Linear probe, then fine-tune: the head's warm-up on the frozen backbone runs at most
#: this many epochs, stopping after FINETUNE_HEAD_PATIENCE without a better validation
#: loss; a warm-up or a fitted head holds out FINETUNE_VALIDATION of the train split.
FINETUNE_HEAD_EPOCHS = 100
FINETUNE_HEAD_PATIENCE = 5
#: The warm-up's learning rate is the head's times this (fixed features: larger steps).
FINETUNE_HEAD_LR_FACTOR = 10.0
FINETUNE_VALIDATION = 0.2
