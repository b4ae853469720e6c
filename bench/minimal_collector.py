"""The collector a competent user would write in an afternoon, to measure ours against:
FastAPI + confluent-kafka (librdkafka), ``json.loads``, ``acks=all``, and a request answered
only once the broker acknowledged every one of its messages. Delivery reports come back as
one asyncio future per message, the pattern of confluent-kafka's own asyncio example
(a poll thread resolves them with ``call_soon_threadsafe``). No validation, no auth, no
metrics: everything ours does beyond this is what the comparison prices.

    EVENTPIPE_KAFKA_BOOTSTRAP=127.0.0.1:9092 EVENTPIPE_EVENTS_TOPIC=t \\
        uvicorn bench.minimal_collector:app --port 8090
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from confluent_kafka import KafkaException, Producer
from fastapi import FastAPI, HTTPException, Request

TOPIC = os.environ.get("EVENTPIPE_EVENTS_TOPIC", "bench-minimal")
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    producer = Producer(
        {"bootstrap.servers": os.environ.get("EVENTPIPE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"), "acks": "all"}
    )
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            producer.poll(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    state["producer"] = producer
    yield
    producer.flush(10)
    stop.set()
    poller.join()


app = FastAPI(lifespan=lifespan)


async def publish(messages: list[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    futures = []
    for message in messages:
        future = loop.create_future()

        def delivered(err: Any, _msg: Any, future: asyncio.Future = future) -> None:
            if err is None:
                loop.call_soon_threadsafe(future.set_result, None)
            else:
                loop.call_soon_threadsafe(future.set_exception, KafkaException(err))

        key = (message.get("userId") or message.get("anonymousId") or "").encode()
        state["producer"].produce(TOPIC, json.dumps(message).encode(), key, on_delivery=delivered)
        futures.append(future)
    try:
        await asyncio.gather(*futures)
    except KafkaException as exc:
        raise HTTPException(503, "not stored") from exc


@app.post("/v1/batch")
async def batch(request: Request) -> dict:
    await publish(json.loads(await request.body())["batch"])
    return {"success": True}


@app.post("/v1/track")
async def track(request: Request) -> dict:
    await publish([json.loads(await request.body())])
    return {"success": True}
