"""The bench's arithmetic: summaries, baseline ratios, per-level aggregation, the table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from eva.stats import percentile

# Each streamed measure and the baseline measure it is compared with: what a person waits
# for in the streamed pipeline against what they wait for in the sequential one.
BASELINE_OF: dict[str, str] = {
    "chat_latency_ms": "baseline_llm_ms",
    "chat_llm_first_token_ms": "baseline_llm_ms",
    "stream_client_first_audio_ms": "baseline_text_to_audio_ms",
    "stream_server_first_audio_ms": "baseline_text_to_audio_ms",
    "stream_first_clause_ms": "baseline_llm_ms",
    "stream_tts_first_chunk_ms": "baseline_tts_ms",
    "tts_short_clause_first_chunk_ms": "baseline_tts_short_clause_ms",
    "tts_short_clause_request_ms": "baseline_tts_short_clause_ms",
    "speech_first_byte_ms": "baseline_tts_short_clause_ms",
    "speech_request_ms": "baseline_tts_short_clause_ms",
    "realtime_voice_to_voice_ms": "baseline_voice_to_voice_ms",
    "voice_to_voice_ms": "baseline_voice_to_voice_ms",
    "first_audio_any_ms": "baseline_voice_to_voice_ms",
    "server_voice_to_voice_ms": "baseline_voice_to_voice_ms",
    "stt_ms": "baseline_stt_ms",
    "wer": "baseline_wer",
}

# The targets, shown next to the figures they apply to.
TARGETS: dict[str, str] = {
    "stream_client_first_audio_ms": "p50 ≤ 150",
    "voice_to_voice_ms": "p50 ≤ 400, p95 ≤ 700",
    "tts_short_clause_first_chunk_ms": "p50 ≤ 30",
}
CONCURRENCY_TARGET = "4 sessions: v2v p95 < 1000, no failures"

# Per-turn figures of a voice turn, aggregated per concurrency level.
VOICE_MEASURES = (
    "voice_to_voice_ms",
    "first_audio_any_ms",
    "server_voice_to_voice_ms",
    "stt_ms",
    "wer",
)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95 and max of the values that exist (NaN marks a turn without that figure)."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"n": 0}
    return {
        "n": len(clean),
        "p50": round(percentile(clean, 50), 1),
        "p95": round(percentile(clean, 95), 1),
        "max": round(max(clean), 1),
    }


def ratio(measure: Mapping[str, float], baseline: Mapping[str, float], key: str) -> float | None:
    """measure[key] / baseline[key] (below 1: the streamed pipeline is faster), or None."""
    if key not in measure or key not in baseline or not baseline[key]:
        return None
    return round(measure[key] / baseline[key], 3)


def with_ratios(summaries: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each summary plus its baseline's name and the p50 and p95 ratios to it."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in summaries.items():
        entry = dict(s)
        base_name = BASELINE_OF.get(name.split("@")[0])
        base = summaries.get(base_name or "")
        if base_name and base:
            entry["baseline"] = base_name
            entry["ratio_p50"] = ratio(s, base, "p50")
            entry["ratio_p95"] = ratio(s, base, "p95")
        out[name] = entry
    return out


def aggregate_level(sessions: int, turns: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One concurrency level: turns tried, failures (with reasons), summaries of the rest."""
    ok = [t for t in turns if "failure" not in t]
    failures = [str(t["failure"]) for t in turns if "failure" in t]
    return {
        "sessions": sessions,
        "turns": len(turns),
        "failures": len(failures),
        "failure_reasons": sorted(set(failures)),
        "summary": {
            name: summary([float(t[name]) for t in ok if name in t]) for name in VOICE_MEASURES
        },
        "raw": {name: [float(t[name]) for t in ok if name in t] for name in VOICE_MEASURES},
        "per_turn": list(turns),
    }


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _ratio_cell(entry: Mapping[str, Any]) -> str:
    if entry.get("ratio_p50") is None:
        return "-"
    return f"×{entry['ratio_p50']} / ×{_cell(entry.get('ratio_p95'))}"


def markdown_table(report: Mapping[str, Any]) -> str:
    """The figures, each with its baseline ratio, then the concurrency levels and memory."""
    summaries: Mapping[str, Mapping[str, Any]] = report["summary"]
    lines = [
        "| measure | n | p50 ms | p95 ms | max ms | vs baseline (p50 / p95) | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        if name.startswith("baseline_"):
            continue
        lines.append(
            f"| {name} | {s.get('n', 0)} | {_cell(s.get('p50'))} | {_cell(s.get('p95'))} | "
            f"{_cell(s.get('max'))} | {_ratio_cell(s)} | {TARGETS.get(name, '')} |"
        )
    lines += [
        "",
        "| baseline (sequential, same models, same inputs) | n | p50 ms | p95 ms | max ms |",
    ]
    lines.append("|---|---|---|---|---|")
    for name, s in summaries.items():
        if name.startswith("baseline_"):
            lines.append(
                f"| {name} | {s.get('n', 0)} | {_cell(s.get('p50'))} | {_cell(s.get('p95'))} "
                f"| {_cell(s.get('max'))} |"
            )
    levels = report.get("concurrency", [])
    if levels:
        base_v2v = summaries.get("baseline_voice_to_voice_ms", {})
        lines += [
            "",
            f"| sessions | turns | failures | v2v p50 ms | v2v p95 ms | vs baseline p50 | "
            f"STT p50 ms | STT p95 ms | WER p50 | target: {CONCURRENCY_TARGET} |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for level in levels:
            v2v = level["summary"]["voice_to_voice_ms"]
            stt = level["summary"]["stt_ms"]
            lines.append(
                f"| {level['sessions']} | {level['turns']} | {level['failures']} | "
                f"{_cell(v2v.get('p50'))} | {_cell(v2v.get('p95'))} | "
                f"{_cell(ratio(v2v, base_v2v, 'p50'))} | {_cell(stt.get('p50'))} | "
                f"{_cell(stt.get('p95'))} | {_cell(level['summary']['wer'].get('p50'))} | |"
            )
    memory = report.get("memory", {})
    lines.append("")
    if memory.get("available"):
        lines.append(
            "Server peak resident memory (Eva and its model server, summed, sampled every"
            f" 0.5 s; processes: {memory.get('processes', 1)}): {memory['peak_rss_mib']} MiB"
        )
    else:
        lines.append(f"Server peak resident memory: unavailable ({memory.get('reason', '')})")
    return "\n".join(lines)
