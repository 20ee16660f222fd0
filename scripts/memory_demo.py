"""A two-session conversation over /ws with one user_id: what Eva learns in the first
session, and how she greets and answers in the second. Start Eva first, then:
.venv/bin/python scripts/memory_demo.py ws://127.0.0.1:8000/ws"""

import asyncio
import json
import sys

import websockets

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"
USER = "ana-demo"


async def turn(ws, text):
    if text is not None:
        await ws.send(json.dumps({"type": "text", "text": text}))
        print(f"Ana: {text}")
    while True:
        msg = await ws.recv()
        if isinstance(msg, bytes):
            continue
        ev = json.loads(msg)
        if ev["type"] == "response.done":
            print(f"Eva: {ev['text']}")
            return


async def session(lines, greet):
    async with websockets.connect(
        f"{URL}?user_id={USER}&greet={'true' if greet else 'false'}", max_size=None
    ) as ws:
        created = json.loads(await ws.recv())
        print(f"--- session {created['session_id'][:8]}")
        if greet:
            await turn(ws, None)
        for line in lines:
            await turn(ws, line)
            await asyncio.sleep(3)  # let memory settle like a person pausing


async def main():
    await session(
        [
            "Hi Eva, my name is Ana.",
            "I work as a nurse at the hospital in Lyon.",
            "My sister Clara is getting married in June, and I'm a bit nervous about my speech.",
            "I love hiking in the mountains on weekends.",
        ],
        greet=False,
    )
    await session(
        [
            "Do you remember my sister's name?",
            "Where do I work?",
        ],
        greet=True,
    )


asyncio.run(main())
