"""What operators watch: Prometheus metrics (metrics.py, collectors.py), one JSON log line per
request with a request id (requests.py, logs.py), and sources gone silent (silence.py)."""
