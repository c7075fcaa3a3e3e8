"""Source: consuming feature records from Kafka and decoding them."""
