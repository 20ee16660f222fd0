from eva.bench.playback import AUDIBLE_GAP_S, JITTER_BUFFER_S, PlaybackGaps

RATE = 1000  # samples a second: 2 bytes a millisecond
SECOND = 2 * RATE


def test_audio_arriving_at_real_time_plays_without_a_gap() -> None:
    heard = PlaybackGaps(RATE)
    for n in range(20):  # 40 ms chunks, each sent as the previous one plays
        heard.arrived(n * 0.04, SECOND * 40 // 1000)
    assert heard.gaps_s == []


def test_a_chunk_later_than_the_audio_held_is_a_gap_of_the_wait_and_a_fresh_cushion() -> None:
    heard = PlaybackGaps(RATE)
    heard.arrived(0.0, SECOND)  # plays from 0.08 to 1.08
    heard.arrived(1.5, SECOND)  # the player ran dry at 1.08, restarts at 1.58
    assert heard.gaps_s == [1.5 + JITTER_BUFFER_S - 1.08]
    assert heard.gaps_after_s == [1.0]  # one second of speech heard before it
    heard.arrived(2.0, SECOND)  # held: 1.58 to 2.58 still playing
    assert len(heard.gaps_s) == 1
    assert abs(sum(heard.gaps_s) - 0.5) < 1e-9


def test_a_gap_under_the_audible_threshold_is_not_counted() -> None:
    heard = PlaybackGaps(RATE)
    heard.arrived(0.0, SECOND)  # dry at 1.08
    heard.arrived(1.08 - JITTER_BUFFER_S + AUDIBLE_GAP_S / 2 + 0.001, SECOND)
    assert heard.gaps_s == []


def test_audio_sent_ahead_in_a_burst_covers_a_later_stall() -> None:
    heard = PlaybackGaps(RATE)
    heard.arrived(0.0, 3 * SECOND)  # three seconds at once, as a lead
    heard.arrived(2.9, SECOND)  # a 2.9 s stall in sending, within what was held
    assert heard.gaps_s == []
