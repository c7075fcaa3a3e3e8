"""Sink: encoding predictions and dead letters, and producing them to Kafka."""
