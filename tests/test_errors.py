"""errors: Spark, Py4J and Python-worker failures become one line that names the cause."""
from __future__ import annotations

from sparkdl_magics.errors import spark_error_summary, user_message


def test_a_python_worker_failure_names_the_exception_the_worker_raised(spark):
    from pyspark.sql import functions as F

    @F.udf("string")
    def needs_a_backend(_):
        import no_such_backend_on_the_workers  # noqa: F401
        return "x"

    try:
        spark.range(1).select(needs_a_backend("id")).collect()
    except Exception as exc:  # the PythonException Spark raises for the failed task
        line = spark_error_summary(exc)
    else:
        raise AssertionError("the UDF should have failed")
    assert "\n" not in line and len(line) < 300
    assert line.startswith("Spark error [")
    assert "ModuleNotFoundError: No module named 'no_such_backend_on_the_workers'" in line


def test_traceback_text_is_reduced_to_the_raised_exception():
    from sparkdl_magics.errors import _python_cause
    message = ("Job aborted: org.apache.spark.api.python.PythonException: Traceback (most "
               "recent call last):\n  File \"a.py\", line 1, in f\n    g()\nKeyError: 'x'\n\n"
               "During handling of the above exception, another exception occurred:\n\n"
               "Traceback (most recent call last):\n  File \"a.py\", line 3, in f\n"
               "ValueError: bad row\n\tat org.apache.spark.Something(Some.scala:1)\n")
    assert _python_cause(message) == ("Job aborted: org.apache.spark.api.python."
                                      "PythonException: ValueError: bad row")
    assert _python_cause("plain message\nsecond line") == "plain message"
    assert user_message(ValueError("a bug")) is None  # real bugs are not shortened
