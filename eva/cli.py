"""The ``eva`` command: serve, say, chat, bench, loadtest, eval, selfcheck, doctor."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import sys
import time
from pathlib import Path

from eva import __version__
from eva.config import Settings


def _say_progress(message: str) -> None:
    print(f"  {message}", flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from eva.server.app import create_app
    from eva.server.listen import listening_socket
    from eva.server.serving import (
        DrainingServer,
        check_exposure,
        configure_logging,
        startup_line,
        uvicorn_options,
    )

    # A fatal signal in native code (an engine built for another CPU) prints every thread's
    # Python stack, whose frames name the engine, instead of dying without a word.
    faulthandler.enable(all_threads=True)
    settings = Settings(**{k: v for k, v in (("host", args.host), ("port", args.port)) if v})
    check_exposure(settings)
    url = f"http://{settings.host}:{settings.port}"
    print(startup_line(settings), flush=True)
    print(f"Eva {__version__}: loading models (the first start also prepares caches)", flush=True)

    def ready() -> None:
        print(f"Eva is ready and listening on {url}  (API docs: {url}/docs)", flush=True)

    configure_logging()
    app = create_app(settings, progress=_say_progress, on_ready=ready)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    # Our own listening socket: it caps each connection's send buffer (eva/server/listen.py).
    server = DrainingServer(config, app, settings.drain_timeout_s)
    server.run(sockets=[listening_socket(settings.host, settings.port)])
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    import threading

    import numpy as np

    from eva.audio import wav_bytes
    from eva.conversation.text_shaping import speakable
    from eva.engines import registry
    from eva.engines.voices import VoiceCatalog

    settings = Settings()
    engines = [registry.create("tts", name, settings) for name in settings.tts_backends]
    catalog = VoiceCatalog(engines, args.voice or settings.tts_voice, settings.language)
    voice = catalog.info(args.voice)
    started = time.monotonic()
    chunks = list(
        catalog.synthesize(speakable(args.text, settings.language), voice.id, threading.Event())
    )
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    Path(args.output).write_bytes(wav_bytes(pcm, voice.sample_rate))
    seconds = len(pcm) / voice.sample_rate
    print(
        f"wrote {args.output}: {seconds:.1f}s of audio by {voice.id} "
        f"in {(time.monotonic() - started) * 1000:.0f} ms"
    )
    return 0


async def _chat_loop(settings: Settings, user_id: str | None = None) -> None:
    from eva.conversation.persona import load_persona
    from eva.conversation.service import Conversation
    from eva.conversation.turn import TextDelta, TurnDone
    from eva.engines.runtime import Engines
    from eva.stats import LatencyStats
    from eva.store import open_store

    print("loading models...", flush=True)
    engines = await asyncio.to_thread(
        Engines.load, settings, _say_progress, load_persona(settings).prefix
    )
    store = open_store(settings)
    service = Conversation(settings, engines, store, LatencyStats())
    session = await service.open_session(None, user_id)
    print(f"Talk to {service.persona.name} (session {session.id}); an empty line or Ctrl-D quits.")
    greeting = await service.greeting(session.id, user_id)
    if greeting is not None:
        print(f"{service.persona.name.lower()}> {greeting}", flush=True)
    try:
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                break
            if not line.strip():
                break
            print(f"{service.persona.name.lower()}> ", end="", flush=True)
            async for event in service.reply(session.id, line.strip()):
                if isinstance(event, TextDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, TurnDone):
                    t = event.timings
                    print(
                        f"\n  [first token {t.get('llm_first_token_ms', 0):.0f} ms, "
                        f"first audio {t.get('first_audio_ms', 0):.0f} ms, "
                        f"total {t.get('total_ms', 0):.0f} ms]",
                        flush=True,
                    )
    finally:
        await service.aclose()
        store.close()
        engines.close()


def cmd_chat(args: argparse.Namespace) -> int:
    from eva.server.identity import USER_ID_PATTERN

    if args.user is not None and not USER_ID_PATTERN.fullmatch(args.user):
        print("eva chat: --user must be 1-64 letters, digits or any of _.:-", file=sys.stderr)
        return 2
    asyncio.run(_chat_loop(Settings(), args.user))
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from eva.cluster.run import ClusterPlan, run_cluster
    from eva.server.serving import check_exposure

    settings = Settings()
    check_exposure(settings.model_copy(update={"host": args.host}))  # the balancer's side
    directory = Path(args.directory) if args.directory else settings.data_dir / "cluster"
    plan = ClusterPlan(args.host, args.port, args.workers, directory, settings.database_url)
    return run_cluster(plan, settings)


def cmd_bench(args: argparse.Namespace) -> int:
    from eva.bench.harness import main as bench_main

    return bench_main(args)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from eva.bench.load import main as load_main

    return load_main(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from eva.bench.eval import main as eval_main

    return eval_main(args)


def cmd_selfcheck(args: argparse.Namespace) -> int:
    from eva.native import selfcheck, smoke

    unknown = [name for name in args.checks if name not in smoke.CHECKS]
    if unknown:
        print(f"eva selfcheck: unknown checks {unknown}; known: {list(smoke.CHECKS)}")
        return 2
    return selfcheck.run_all(args.checks or None, repair=args.repair)


def cmd_doctor(args: argparse.Namespace) -> int:
    from eva.native import doctor

    return doctor.run(Settings(**{k: v for k, v in (("port", args.port),) if v}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eva", description="Eva, a voice companion.")
    parser.add_argument("--version", action="version", version=f"eva {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the server (default 127.0.0.1:8000)")
    serve.add_argument("--host", default=None, help="address to listen on (EVA_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (EVA_PORT)")
    serve.set_defaults(func=cmd_serve)

    say = commands.add_parser("say", help="speak a sentence into a WAV file")
    say.add_argument("text")
    say.add_argument("-o", "--output", default="eva.wav")
    say.add_argument("--voice", default=None, help="a voice id (see GET /voices)")
    say.set_defaults(func=cmd_say)

    chat = commands.add_parser("chat", help="a typed conversation in the terminal")
    chat.add_argument(
        "--user", default=None, help="who is talking: Eva remembers this user across chats"
    )
    chat.set_defaults(func=cmd_chat)

    cluster = commands.add_parser(
        "cluster",
        help="a trial service on this machine: PostgreSQL, llama-server, N workers, HAProxy",
    )
    cluster.add_argument("--workers", type=int, default=2, help="eva serve workers (2)")
    cluster.add_argument("--host", default="127.0.0.1", help="where the balancer listens")
    cluster.add_argument("--port", type=int, default=8000, help="the balancer's port (8000)")
    cluster.add_argument(
        "--directory", default=None, help="logs, configuration, data (EVA_DATA_DIR/cluster)"
    )
    cluster.set_defaults(func=cmd_cluster)

    from eva.bench.harness import add_arguments

    bench = commands.add_parser("bench", help="measure latency against a server")
    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    from eva.bench.load import add_arguments as add_load_arguments

    loadtest = commands.add_parser("loadtest", help="many concurrent /ws sessions for minutes")
    add_load_arguments(loadtest)
    loadtest.set_defaults(func=cmd_loadtest)

    from eva.bench.eval import add_arguments as add_eval_arguments

    evaluate = commands.add_parser("eval", help="check what Eva says, per brain (no judge model)")
    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    check = commands.add_parser(
        "selfcheck", help="run every engine once, each in a child process, and explain crashes"
    )
    check.add_argument("checks", nargs="*", help="only these checks (default: all that apply)")
    check.add_argument(
        "--repair", action="store_true", help="take a crashing llama.cpp CPU variant out"
    )
    check.set_defaults(func=cmd_selfcheck)

    doctor = commands.add_parser(
        "doctor", help="the CPU, the llama.cpp build, models, disk, memory, port, engine checks"
    )
    doctor.add_argument("--port", type=int, default=None, help="the port to check (EVA_PORT)")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line message instead of a traceback
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        print(f"eva: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
