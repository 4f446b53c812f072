"""Writes points with the InfluxDB 2 Python client (line protocol over POST /api/v2/write).

Usage: influx_write.py URL TOKEN
"""

import sys
from datetime import datetime, timezone

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

url, token = sys.argv[1], sys.argv[2]
with InfluxDBClient(url=url, token=token, org="my-org") as client:
    write = client.write_api(write_options=SYNCHRONOUS)
    when = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    write.write(
        bucket="my-bucket",
        record=[
            Point("h2o")
            .tag("location", "coyote creek")
            .tag("sensor id", "a,b=c")
            .field("level", 8.5)
            .field("count", 3)
            .field("note", 'say "hi" \\ bye')
            .field("ok", True)
            .time(when, WritePrecision.US),
            Point("h2o").tag("location", "santa monica").field("value", 1.25).time(when),
        ],
        write_precision=WritePrecision.US,
    )
    # A raw line with every escape, as Telegraf would send it.
    write.write(bucket="my-bucket", record=r"raw\ m,t\,k=v\=1 f\ 1=1u 1704164645000000000")
print("written")
