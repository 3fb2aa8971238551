"""Stream processors: thin Kafka/Faust adapters around the I/O-free gait core."""
