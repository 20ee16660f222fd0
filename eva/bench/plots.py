"""PNG plots of a bench run, readable at a glance: where the time goes per stage (streamed
next to the sequential baseline), and voice-to-voice latency against concurrent sessions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server, and no GUI toolkit needed

import matplotlib.pyplot as plt
from matplotlib import ticker, transforms

from eva.stats import percentile

# (label, raw measure) in the order a turn goes through them; the baseline's rows follow.
STAGES: tuple[tuple[str, str], ...] = (
    ("LLM first token (typed)", "chat_llm_first_token_ms"),
    ("first clause ready (typed)", "stream_first_clause_ms"),
    ("TTS first chunk, first clause", "stream_tts_first_chunk_ms"),
    ("TTS first chunk, short clause", "tts_short_clause_first_chunk_ms"),
    ("text → first audio (typed)", "stream_client_first_audio_ms"),
    ("STT after end of speech", "stt_ms"),
    ("voice → first reply audio", "voice_to_voice_ms"),
)
BASELINE_STAGES: tuple[tuple[str, str], ...] = (
    ("baseline: whole reply (LLM)", "baseline_llm_ms"),
    ("baseline: whole synthesis", "baseline_tts_ms"),
    ("baseline: short clause synthesis", "baseline_tts_short_clause_ms"),
    ("baseline: text → audio", "baseline_text_to_audio_ms"),
    ("baseline: whole transcript (STT)", "baseline_stt_ms"),
    ("baseline: voice → audio", "baseline_voice_to_voice_ms"),
)
_STREAMED = "#2b7bba"
_BASELINE = "#b0b0b0"


def _clean(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def stage_plot(raw: Mapping[str, Sequence[float]], path: Path, title: str) -> None:
    """Horizontal box plots, one row per stage, streamed stages in blue, baseline in grey."""
    rows = [
        (label, _clean(raw.get(key, [])), colour)
        for stages, colour in ((STAGES, _STREAMED), (BASELINE_STAGES, _BASELINE))
        for label, key in stages
    ]
    rows = [row for row in rows if row[1]][::-1]  # top to bottom in pipeline order
    if not rows:
        return
    figure, axes = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.6))
    boxes = axes.boxplot(
        [values for _, values, _ in rows],
        vert=False,
        widths=0.6,
        patch_artist=True,
        showfliers=True,
        medianprops={"color": "black", "linewidth": 1.5},
    )
    for patch, (_, _, colour) in zip(boxes["boxes"], rows, strict=True):
        patch.set_facecolor(colour)
    axes.set_yticks(range(1, len(rows) + 1), [label for label, _, _ in rows])
    # Medians in a column at the right edge, where outliers cannot push them about.
    at_right = transforms.blended_transform_factory(axes.transAxes, axes.transData)
    for index, (_, values, _) in enumerate(rows, start=1):
        axes.text(
            1.01,
            index,
            f"p50 {percentile(values, 50):.0f}",
            transform=at_right,
            va="center",
            fontsize=8,
        )
    # From ~50 ms stages to multi-second baselines: only a log scale shows both.
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    axes.set_xlabel("milliseconds, log scale (box: p25-p75, line: median, whiskers: 1.5 IQR)")
    axes.set_title(title, fontsize=11)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def concurrency_plot(
    levels: Sequence[Mapping[str, Any]],
    path: Path,
    title: str,
    baseline_v2v_p50: float | None = None,
) -> None:
    """p50 and p95 of voice-to-voice and STT per number of simultaneous sessions."""
    if not levels:
        return
    sessions = [level["sessions"] for level in levels]
    figure, axes = plt.subplots(figsize=(10.5, 4.8))
    for measure, label, colour in (
        ("voice_to_voice_ms", "voice → first reply audio", _STREAMED),
        ("stt_ms", "STT after end of speech", "#e08a2c"),
    ):
        for quantile, style in (("p50", "-o"), ("p95", "--s")):
            values = [level["summary"][measure].get(quantile, math.nan) for level in levels]
            axes.plot(sessions, values, style, color=colour, label=f"{label}, {quantile}")
    for level in levels:
        if level["failures"]:
            axes.annotate(
                f"{level['failures']}/{level['turns']} failed",
                (level["sessions"], 0.02),
                xycoords=transforms.blended_transform_factory(axes.transData, axes.transAxes),
                xytext=(0, 8),
                textcoords="offset points",
                ha="center",
                color="crimson",
                fontsize=9,
            )
    if baseline_v2v_p50 is not None:
        axes.axhline(baseline_v2v_p50, color=_BASELINE, linewidth=2)
        axes.annotate(
            "sequential baseline, one session, p50",
            (sessions[-1], baseline_v2v_p50),
            xytext=(0, 4),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="dimgray",
        )
    axes.axhline(1000, color="crimson", linestyle=":", linewidth=1)
    axes.annotate(
        "target at 4 sessions: v2v p95 < 1 s",
        (sessions[-1], 1000),
        xytext=(0, 4),
        textcoords="offset points",
        ha="right",
        fontsize=8,
        color="crimson",
    )
    axes.set_xscale("log", base=2)
    axes.set_xticks(sessions, [str(s) for s in sessions])
    axes.set_xlabel("simultaneous voice sessions")
    axes.set_ylabel("milliseconds (log scale)")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    axes.set_title(title, fontsize=11)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
