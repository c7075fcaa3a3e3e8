"""knnstream: streaming K-nearest-neighbours predictions on Kafka."""
