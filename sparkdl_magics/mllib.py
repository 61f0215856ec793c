"""Helpers around fitted MLlib models shared by the single- and multi-label trainers."""
from __future__ import annotations

from typing import Any


def drop_training_summaries(model: Any) -> None:
    """Forget the JVM training summary of a classic-session model (and its sub-models).

    Spark 4 classic: a summary built while a job tag is set (every magic tags its jobs)
    holds the session, and any later job using the model fails with "Task not
    serializable". Nothing here needs the summary after the objective history is read.
    Spark Connect keeps models on the server and is not affected.
    """
    java_model = getattr(model, "_java_obj", None)
    if java_model is None or not type(java_model).__module__.startswith("py4j"):
        return
    from py4j.protocol import Py4JError
    from pyspark import SparkContext
    jvm = SparkContext._jvm  # classic only (a Py4J model)
    try:
        if java_model.hasSummary():
            java_model.setSummary(jvm.scala.Option.empty())
    except Py4JError:  # a JVM model class without a training summary (no such method)
        pass
    for sub in getattr(model, "models", None) or []:  # OneVsRestModel
        drop_training_summaries(sub)
