"""Where should recalled memories go in the prompt? Asks the embedded LLM questions whose
answers are in the memories, with them in the system message or in a note just before the
question, and counts the answers that use them. Run: .venv/bin/python scripts/memory_placement.py
(about a minute; 2026-11-26: system message 1/24, note 11/24)."""

import re
import tempfile
import threading
from pathlib import Path

from eva.config import Settings
from eva.conversation.persona import load_persona
from eva.conversation.prompt import build_messages
from eva.engines.llm_llamacpp import create

s = Settings(data_dir=Path(tempfile.mkdtemp()))
p = load_persona(s)
llm = create(s)
mem = """What you remember about the person you are talking with:
- Their name is Ana.
- Has a sister named Clara.
- Works as a nurse at the hospital in Lyon.
- Their sister is getting married in June.
- Loves hiking in the mountains on weekends."""
qs = [
    ("Do you remember my sister's name?", r"clara"),
    ("Where do I work?", r"nurse|hospital|lyon"),
    ("What do I love doing on weekends?", r"hik|mountain"),
    ("What's my name?", r"\bana\b"),
]
N = 6
for place in ("system", "note"):
    hits = 0
    for q, pat in qs:
        h = 0
        for _ in range(N):
            if place == "system":
                msgs = build_messages(p.prompt, [], q, p.examples, summary=mem)
            else:
                msgs = build_messages(p.prompt, [], q, p.examples, memories=mem)
            out = "".join(llm.stream(msgs, max_tokens=60, cancel=threading.Event()))
            h += bool(re.search(pat, out.lower()))
        print(place, q, f"{h}/{N}", flush=True)
        hits += h
    print(place, "total", hits, "/", N * len(qs), flush=True)
