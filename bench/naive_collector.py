"""The baseline the collector is measured against: FastAPI + kafka-python, one
``send().get()`` per event (what a first version usually looks like)."""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request
from kafka import KafkaProducer

app = FastAPI()
producer: KafkaProducer | None = None
TOPIC = os.environ.get("EVENTPIPE_EVENTS_TOPIC", "bench-naive")


@app.on_event("startup")
def connect() -> None:
    global producer
    producer = KafkaProducer(
        bootstrap_servers=os.environ.get("EVENTPIPE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        acks="all",
        enable_idempotence=True,
    )


@app.post("/v1/batch")
async def batch(request: Request) -> dict:
    body = json.loads(await request.body())
    for message in body["batch"]:
        key = (message.get("userId") or message.get("anonymousId") or "").encode()
        producer.send(TOPIC, key=key, value=json.dumps(message).encode()).get(timeout=10)
    return {"success": True}


@app.post("/v1/track")
async def track(request: Request) -> dict:
    message = json.loads(await request.body())
    key = (message.get("userId") or message.get("anonymousId") or "").encode()
    producer.send(TOPIC, key=key, value=json.dumps(message).encode()).get(timeout=10)
    return {"success": True}
