"""Streams: a binaryFile file-source stream is predicted and featurized with an
availableNow trigger, the same answers as on a static frame."""
from __future__ import annotations

from helpers import SMALL


def test_a_file_stream_is_predicted_and_featurized_with_available_now(spark, image_folder,
                                                                      top_weights, tmp_path):
    from sparkdl_magics import predict
    from sparkdl_magics.streaming import featurize_stream, read_image_stream, run_available_now
    folder = image_folder / "daisy"
    n_files = len(list(folder.iterdir()))
    stream = read_image_stream(str(folder), labels_from_folders=True, spark=spark)
    assert stream.isStreaming
    preds = predict(stream, model=SMALL, weights=str(top_weights), top_k=2)
    assert preds.is_streaming and "streaming" in preds._repr_html_()
    run_available_now(preds.df.select("path", "prediction", "predictions"), sink="parquet",
                      path=str(tmp_path / "preds"))
    written = spark.read.parquet(str(tmp_path / "preds"))
    assert written.count() == n_files
    assert written.filter("prediction is null").count() == 0
    run_available_now(featurize_stream(read_image_stream(str(folder), spark=spark),
                                       model=SMALL, weights="none", batch_size=4),
                      sink="memory", query_name="daisy_features")
    feats = spark.sql("SELECT features FROM daisy_features").collect()
    assert len(feats) == n_files and all(len(r["features"]) == 576 for r in feats)
