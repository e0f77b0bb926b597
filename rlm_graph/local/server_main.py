"""Child-process entry point: serve one GGUF file with xllamacpp's llama.cpp HTTP server.

Run as ``python -m rlm_graph.local.server_main --model F --port-file P ...`` by
:mod:`rlm_graph.local.server`. It writes the address it listens on to ``--port-file`` once the
model is loaded, then stays up until it is signalled or its parent process goes away (checked
twice a second, so the server never outlives the process that started it, even after SIGKILL).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rlm_graph.local.server_main")
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--parent-pid", type=int, default=0)
    return p.parse_args(argv)


def _watch_parent(parent_pid: int) -> None:
    # PR_SET_PDEATHSIG fires when the *thread* that spawned us exits, and LangGraph starts the
    # server from short-lived worker threads, so watch the parent process id instead.
    while True:
        ppid = os.getppid()
        if ppid != parent_pid or ppid == 1:
            os._exit(0)
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Load the model, publish the listening address, block until told to stop."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    parent = args.parent_pid or os.getppid()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = [args.host]
    params.port = args.port
    server = xllamacpp.Server(params)  # blocks until the model is loaded and listening
    address = str(server.listening_address)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(address)
    os.replace(tmp, args.port_file)
    print(f"rlm-graph local server listening on {address}", file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        pass
    # Skip the C++ destructor's slow orderly shutdown: the process is going away anyway.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
