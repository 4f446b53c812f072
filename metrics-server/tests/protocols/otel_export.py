"""Exports metrics of every instrument kind with the OpenTelemetry Python SDK.

Usage: otel_export.py sdk   -- through the SDK's OTLP/HTTP exporter (protobuf), configured only
                               by the standard OTEL_EXPORTER_OTLP_* environment variables
       otel_export.py json URL TOKEN -- the same data encoded by the SDK, converted to OTLP JSON
                               (protobuf's JSON mapping, integer enums) and POSTed to URL

Exits non-zero when the export is not a success; prints the server's answer in json mode.
"""

import sys
import urllib.request

from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource


def record(prefix):
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"service.name": "otel-test"}), metric_readers=[reader]
    )
    meter = provider.get_meter("test.meter", "1.0")
    counter = meter.create_counter(prefix + ".requests")
    counter.add(3, {"route": "/a"})
    counter.add(2, {"route": "/a"})
    histogram = meter.create_histogram(prefix + ".latency", unit="ms")
    for value in (5, 20, 300):
        histogram.record(value, {"route": "/a"})
    queue = meter.create_up_down_counter(prefix + ".queue")
    queue.add(7)
    queue.add(-2)
    meter.create_observable_gauge(
        prefix + ".temp", callbacks=[lambda options: [Observation(21.5, {"room": "lab"})]]
    )
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def main():
    mode = sys.argv[1]
    if mode == "sdk":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import MetricExportResult

        exporter = OTLPMetricExporter()
        result = exporter.export(record(sys.argv[2] if len(sys.argv) > 2 else "otel"))
        exporter.shutdown()
        if result != MetricExportResult.SUCCESS:
            sys.exit(f"export failed: {result}")
        print("exported")
    elif mode == "json":
        from google.protobuf.json_format import MessageToJson
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        url, token = sys.argv[2], sys.argv[3]
        body = MessageToJson(encode_metrics(record("otljson")), use_integers_for_enums=True)
        request = urllib.request.Request(
            url,
            data=body.encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + token},
            method="POST",
        )
        with urllib.request.urlopen(request) as response:
            print(response.status, response.headers["Content-Type"], response.read().decode())
    else:
        sys.exit("usage: otel_export.py sdk|json ...")


main()
