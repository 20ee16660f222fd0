"""Settings from ``EVA_*`` environment variables and an optional TOML file (``EVA_CONFIG``).

Environment variables win over the file. Lists are comma-separated in the environment
(``EVA_LLM_BACKENDS=openai,llamacpp``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from eva.conversation.prosody import VoiceStyle


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "eva"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eva"


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    # Errors name the setting and the problem but never echo its value: it may be a key.
    model_config = SettingsConfigDict(env_prefix="EVA_", extra="ignore", hide_input_in_errors=True)

    # --- server
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(default_factory=_default_data_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    # Where sessions, messages and memories live (eva/store): empty, one SQLite file in
    # data_dir; postgresql://user:password@host:port/dbname, a PostgreSQL database that
    # several Eva processes share. It may hold a password: never log it.
    database_url: str = ""

    # --- language: what the person speaks; drives STT, text shaping and the default voice
    language: str = "en"

    # --- speech recognition
    stt_backend: str = "whisper"
    # "tiny.en" (packaged, English), "base" (packaged, multilingual) or a CTranslate2 directory
    stt_model: str = "tiny.en"
    stt_threads: int = 2
    # Encode short utterances in a window their own length instead of Whisper's 30 s: about
    # ten times faster, same words (see eva/engines/stt_whisper.py).
    stt_short_window: bool = True

    # --- language model; the list is a fallback order
    # "llamaserver": the model served by llama.cpp's own server, a supervised child of Eva;
    # "llamacpp": the model in Eva's process (one conversation at a time); "openai": any
    # OpenAI-compatible server by URL.
    llm_backends: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["llamaserver"])
    # "qwen2.5-coder-1.5b" (packaged, the default brain), "smollm2" (packaged, small and
    # fast) or a path to a GGUF file
    llm_model: str = "qwen2.5-coder-1.5b"
    llm_threads: int = 2
    llm_context: int = 2048  # tokens per conversation (per slot of llama-server)
    # llama-server's slots: conversations evaluated at once, batched, each keeping its own
    # prompt cache. Four on 2 cores gave 1.7x the total tokens/s of one (issue 11).
    llm_slots: int = Field(4, ge=1, le=64)
    # llama-server's speculative decoding (--spec-type), e.g. "ngram-simple" (prompt
    # lookup) or "draft-simple" with a draft model (a packaged name or a GGUF path, same
    # tokenizer); "" for none. Measured in docs/performance.md.
    llm_speculative: str = ""
    # Stop llama-server's computing while speech is synthesized (at most 0.3 s at a time):
    # on two cores the first clause's synthesis is ~60 ms faster (docs/performance.md).
    llm_pause_for_speech: bool = True
    # A reply past its opening words stops its request while another reply is writing its
    # opening, and continues after (eva.engines.opening_priority): under load a new turn's
    # first words no longer share the cores with replies already being heard.
    llm_opening_priority: bool = True
    # Added to the model server's niceness: on shared cores Eva's event loop, speech
    # recognition and synthesis, which people wait on in the moment, go first, and the
    # model takes what they leave. Under eva loadtest on 2 cores, a transcription took p50
    # 0.51-0.66 s at the same priority and 0.31-0.49 s with 5, refusals were told in time,
    # and the model's prompt speed moved little (docs/scaling.md, "2026-12-04"). Never
    # below 0: raising a process's priority takes a privilege Eva should not have.
    llm_nice: int = Field(default=5, ge=0, le=19)
    llm_draft_model: str = ""
    openai_base_url: str = "http://127.0.0.1:8080/v1"
    openai_model: str = "default"
    openai_api_key: str = ""
    # A remote server that has not produced its first token by then is skipped for the next
    # backend: past about 2 s a spoken reply feels broken, and the embedded model answers
    # in well under a second.
    openai_first_token_timeout_s: float = 2.0
    openai_connect_timeout_s: float = 1.0
    # Streams sent to the server at once; more wait in Eva's queue.
    openai_concurrent_streams: int = Field(4, ge=1, le=256)
    # When the server is llama.cpp's with this many slots (--parallel), each conversation
    # keeps to one, so its prompt stays cached there; 0 for any other server.
    openai_llama_cpp_slots: int = Field(0, ge=0, le=64)

    # --- speech synthesis
    # The default voice; "" picks the first voice that speaks ``language``.
    tts_voice: str = ""
    # Extra Piper voices: paths to .onnx files (the .onnx.json must sit beside each).
    piper_voices: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Synthesis gets both cores: the LLM pauses while a clause is synthesized (see
    # SpeechPriority), so they never compete.
    tts_threads: int = 2
    # Every backend listed is loaded and its voices offered; the robotic espeak-ng voices
    # are the fallback when no Piper voice speaks the configured language.
    tts_backends: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["piper", "espeak"]
    )

    # --- voice activity detection and turn-taking (docs/protocol.md explains the defaults)
    vad_backend: str = "silero"
    vad_threshold: float = 0.5
    vad_min_speech_ms: int = 96
    vad_pause_ms: int = 128
    # The end-of-turn model (eva/engines/turn_smart.py); "" leaves the decision to the
    # rule on words alone. eva/conversation/end_of_turn.py says how both are combined.
    end_of_turn_backend: str = "smart_turn"
    # The silence that ends a turn the model is confident about (people answer in ~200 ms).
    end_of_turn_fast_ms: int = Field(200, ge=0)
    # The longest wait, for words that trail off ("and then the doctor said that I...").
    end_of_turn_max_ms: int = Field(2000, ge=0)
    # The rule on words: finished-looking words, anything else (also while the model has
    # not answered yet).
    end_of_turn_complete_ms: int = 500
    end_of_turn_ms: int = 800

    # --- persona and reply bounds
    persona_file: Path | None = None
    system_prompt: str = ""  # overrides the persona file when set
    # A small model ignores length instructions, so replies are bounded in code too.
    max_reply_tokens: int = 90
    max_reply_sentences: int = 3
    history_turns: int = 8  # user+assistant pairs of recent history given to the LLM

    # --- limits on input
    max_message_chars: int = 2000
    max_upload_bytes: int = 10 * 1024 * 1024
    # Any other request body (JSON): the longest message escaped as JSON is under 20 KiB.
    # Enforced while the body is read, so a huge body is refused before it is held.
    max_body_bytes: int = 64 * 1024
    max_audio_seconds: float = 60.0

    # --- access, privacy and limits (issue 6; README "Access and privacy")
    # ``owner:key`` pairs; when any is set every route but /health and the page needs a key,
    # and the key's owner is the user. Secret: kept out of reprs and logs.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Without keys Eva refuses a non-loopback host unless this says it is meant to be open.
    allow_unauthenticated: bool = False
    # Host names this server answers to besides the loopback names and EVA_HOST: a request
    # for any other Host is refused (DNS rebinding). "*" accepts any Host.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Browser origins allowed besides those of an allowed host (exact ``scheme://host[:port]``),
    # for WebSockets and for requests that change something.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Origins whose pages may call the HTTP API (CORS); none by default.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Continuous speech in one /ws turn before the turn is ended for her to answer: Whisper
    # reads 30 s windows, and the utterance buffer must not grow while a noisy microphone
    # keeps the VAD open.
    max_turn_audio_seconds: float = 30.0
    # One binary audio frame: browsers send 20-100 ms (3 KiB); 64 KiB is 2 s, and bigger
    # frames would let one client make the VAD and STT lag for everyone.
    max_audio_frame_bytes: int = 64 * 1024
    # Concurrent WebSocket sessions of one user (a few tabs and devices), and of everyone:
    # uvicorn does not cap WebSocket upgrades, and each voice session holds a VAD stream.
    max_sessions_per_user: int = 8
    max_ws_sessions: int = 128
    # Sessions without a key from one address: a user_id costs nothing to invent, so
    # without this one address could take every session. 0: no cap.
    max_anonymous_sessions_per_address: int = 32
    # Requests (and typed WebSocket turns) per minute, per key, and per client address for
    # those without a key (so that nobody without one can spend a keyed user's budget); a
    # turn costs about a second of both CPU cores, so more than a few a second only queues.
    # 0 turns a limit off.
    rate_limit_per_key: int = 120
    rate_limit_per_address: int = 300
    # A WebSocket with no frame from its client for this long is closed (code 4408); the
    # browser pings every 15 s, so only a vanished client stays silent that long.
    ws_idle_timeout_s: float = 300.0
    # Protocol-level keepalive pings from the server (uvicorn), so that a half-open TCP
    # connection is noticed within interval + timeout.
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0

    # --- admission (docs/scaling.md): what this process takes on, and what it refuses
    # Conversations open at once (WebSocket sessions); 0: CONVERSATIONS_PER_SLOT for each
    # of the language model's slots. Beyond it a new one is told "busy" (close 1013).
    max_conversations: int = Field(0, ge=0)
    # The longest a turn may expect to wait for the language model before it is refused
    # with a Retry-After instead: with the reply's own ~1 s to first audio, this keeps an
    # admitted turn's first audio within 3 s.
    max_turn_wait_s: float = Field(1.5, ge=0)
    # A turn's first audio (a text turn's first words) this long after it asked for the
    # model: the turns let in at once shrink when they come later and grow when in time
    # (eva/conversation/admission.py); 0 lets every slot of the model run at once. Below
    # the 3 s the first audio's p95 should stay under: at 2.5 s the limit grew to three
    # turns at once for a quarter of a load run on two cores, and those turns' first audio
    # came 2.8-4.4 s after asking; at 2 s it kept to two, and the p95 to 2.5-2.7 s
    # (docs/scaling.md, 2026-12-03 evening).
    first_audio_target_s: float = Field(2.0, ge=0)
    # On SIGTERM, how long turns in flight may take to finish before the process exits.
    drain_timeout_s: float = Field(20.0, ge=0)

    # --- memory (issue 5): what Eva remembers about a person across sessions
    # The LLM also reads, while idle, the sentences the fact patterns found nothing in.
    memory_model_extraction: bool = True

    # --- spoken style and conversation manners (docs/architecture.md, "Manners")
    # Expressiveness per voice id, "default" for the others: rate, mood rates, pauses.
    # In the environment, JSON: EVA_VOICE_STYLES='{"espeak-en-us": {"rate": 1.1}}'.
    voice_styles: dict[str, VoiceStyle] = Field(default_factory=dict)
    # A reply whose first audio is not ready this long after the end of the person's turn
    # (the moment Eva decides it ended; for a typed turn, when the text arrived) starts
    # with a short acknowledgement ("Mm."); 0 turns them off. A spoken reply gets one no
    # sooner than 1.2 s after the last word (session.py, ACK_AFTER_SPEECH_S): it plays
    # whole before the reply, so one said just before the reply was ready delays it.
    ack_after_ms: int = Field(350, ge=0)
    # Speech over Eva no longer than this, transcribed as a backchannel ("mm-hm", "yeah"),
    # does not interrupt her; longer speech does. Spoken backchannels last 200-700 ms; a
    # drawn-out "mm-hm" from the test voice is 680 ms. 0: any speech interrupts at once.
    backchannel_max_ms: int = Field(800, ge=0)
    # Hands-free silence after Eva finished speaking before she checks in once ("Still
    # there?"); 0 turns it off.
    reengage_after_s: float = Field(20.0, ge=0)
    # Eva's own "mm-hm" during a long turn, at a pause the end-of-turn model judges
    # unfinished (/ws, hands-free; a session can switch it with session.update).
    backchannels: bool = True

    # --- faults (docs/hardening.md)
    # A /ws client that has not read what it was sent for this long is dropped (close code
    # 4507): past a few seconds its audio is long out of step, and its session is freed.
    ws_send_stall_s: float = 10.0

    @field_validator(
        "llm_backends",
        "tts_backends",
        "piper_voices",
        "api_keys",
        "allowed_hosts",
        "allowed_origins",
        "cors_origins",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("api_keys")
    @classmethod
    def _valid_key_pairs(cls, value: list[SecretStr]) -> list[SecretStr]:
        from eva.server.auth import parse_api_keys

        parse_api_keys([pair.get_secret_value() for pair in value])  # raises a clear ValueError
        return value

    @property
    def db_path(self) -> Path:
        return self.data_dir / "eva.sqlite3"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("EVA_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)
