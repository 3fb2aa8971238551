"""Sinks: gait records from Kafka into InfluxDB (``kafka_sink``) over the v1 HTTP API (``influx``).

Import the submodules directly (``sinks.kafka_sink.run_sink``, ``sinks.influx.InfluxClient``);
this package stays empty so that importing it loads neither aiokafka nor aiohttp.
"""
