"""Streaming scoring: consume JSON records from a broker, score them, publish the results.

`loop` is broker-neutral; `redis_streams`, `nats_jetstream` and `rabbitmq` each adapt one
broker to `broker.Broker`. Records are scored through the serving DataPlane (the same
Batcher as online serving), so there is one inference path.
"""
