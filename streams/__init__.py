"""Event transport and stream processors: the local log, Kafka producer, the projector worker."""
