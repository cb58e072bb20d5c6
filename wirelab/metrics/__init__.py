"""Measurements that tell the truth: mergeable histograms, per-name series, aggregation."""

from .histogram import LogHistogram
from .recorder import Aggregate, Recorder, recorder
from .series import RequestSeries, StreamSeries

__all__ = ["Aggregate", "LogHistogram", "Recorder", "RequestSeries", "StreamSeries", "recorder"]
