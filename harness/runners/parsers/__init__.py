"""Parsers of benchmark tools' text output (``benchmark_model``, ``litert-benchmark``, the iOS app's console,
label_image/inference_diff/app logs) into :class:`~harness.runners.measurement.Measurement` records."""
