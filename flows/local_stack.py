"""A local Prefect stack (server, process workers, the deployments of prefect.yaml) for `make demo` and the tests.

    python -m flows.local_stack demo [--recipe demo] [--param train.num_epochs=2 ...] [--ui]

What it does, in order: start `prefect server start` on a free port of 127.0.0.1 with its own PREFECT_HOME (SQLite),
create the process work pools `cpu` and `gpu` (every deployment in prefect.yaml needs its pool to exist), run
`prefect deploy --all`, start one process worker on `cpu`, run `finetune-and-generate/demo --watch`, and stop what it
started, by process id: the worker first (it ignores its first SIGTERM, so it gets two), then the server. Each child
runs in its own process session; anything they spawned that outlives them is stopped too, so no process is left behind.
Its state and logs (server, worker, CLI calls) go to `<run_dir>/prefect/`, emptied at each start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DEPLOYMENT = "finetune-and-generate/demo"
POOLS = ("cpu", "gpu")  # the work pools prefect.yaml names; the local stack starts a worker on `cpu` only
SERVER_START_TIMEOUT_S = 180  # SQLite start takes 6-8 s here; CI machines can be much slower
KILL_WAIT_S = 60  # after SIGKILL, how long stop() waits for the processes to have exited
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class DeploymentRun:
    """One `prefect deployment run --watch`: the flow run it created and how the CLI ended."""

    flow_run_id: str | None
    returncode: int  # 0 only when the flow run ended Completed
    output: str  # the CLI's stdout and stderr


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, num_lines: int = 40) -> str:
    if not path.is_file():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-num_lines:])


def _stop_process(proc: subprocess.Popen, *, num_terms: int, grace_s: float) -> None:
    """Stop `proc`, its process group and every descendant, by pid: SIGTERM `num_terms` times, then SIGKILL."""
    if proc.poll() is not None:
        return
    family: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        family = psutil.Process(proc.pid).children(recursive=True)  # some lead their own groups (flow runs)
    for _ in range(num_terms):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # proc leads its own session, so its pgid is its pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        if proc.poll() is not None:
            break
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    # The group may hold processes that were not descendants any more (re-parented); they go too.
    group = [p for p in psutil.process_iter() if _process_group(p) == proc.pid]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _wait_until_exited([*alive, *group], timeout_s=KILL_WAIT_S)


def _process_group(process: psutil.Process) -> int | None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        return os.getpgid(process.pid)
    return None


def _has_exited(process: psutil.Process) -> bool:
    """True once `process` is gone or a zombie (exited; only its status is left for its parent to collect)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until_exited(processes: list[psutil.Process], *, timeout_s: float) -> None:
    """SIGKILL takes effect when the process next runs, not when kill() returns: wait until each has exited, so
    whoever looks next (the tests) sees them gone. Only a process stuck in the kernel outlasts `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not all(_has_exited(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)


class LocalStack:
    """A started Prefect server plus the workers started on it; use :func:`local_stack` to get one."""

    def __init__(self, stack_dir: Path, *, ui: bool = False, echo: bool = False) -> None:
        self.stack_dir = Path(stack_dir).resolve()
        self.echo = echo  # also print each CLI command and the flow run's progress to stdout (the demo)
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.ui_url = f"http://127.0.0.1:{self.port}" if ui else None
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(self.stack_dir / "home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_CLI_PROMPT": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true" if ui else "false",
            "PREFECT_WORKER_QUERY_SECONDS": "2",  # pick up new runs quickly (default 10 s)
            "PREFECT_LOGGING_EXTRA_LOGGERS": "cosmos_synth",  # the stages' lines in the run's logs, as prefect.yaml
            "PYTHONUNBUFFERED": "1",
            "PROJECT_DIR": str(REPO_ROOT),  # `{{ $PROJECT_DIR }}` in prefect.yaml, read by `prefect deploy`
        }
        self.env.pop("PREFECT_PROFILE", None)
        self.env.pop("PREFECT_API_KEY", None)
        self._server: subprocess.Popen | None = None
        self._workers: list[subprocess.Popen] = []
        self._logs: list[Any] = []

    # -- processes ------------------------------------------------------------------------------------------------
    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.stack_dir / log_name, "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", *args],
            cwd=REPO_ROOT,
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_server(self) -> None:
        """Start on a fresh PREFECT_HOME (a stale database could hold a dead run's concurrency slot) and fresh logs."""
        shutil.rmtree(self.stack_dir, ignore_errors=True)
        self.stack_dir.mkdir(parents=True)
        self._server = self._spawn(["server", "start", "--host", "127.0.0.1", "--port", str(self.port)], "server.log")
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                log = self.stack_dir / "server.log"
                raise RuntimeError(
                    f"Prefect server exited with code {self._server.returncode}; {log} ends with:\n{_tail(log)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(
            f"Prefect server not healthy at {self.api_url} after {SERVER_START_TIMEOUT_S} s; "
            f"see {self.stack_dir / 'server.log'}:\n{_tail(self.stack_dir / 'server.log')}"
        )

    def start_worker(
        self, pool: str, *, name: str | None = None, limit: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """A process worker on `pool`; `limit` caps its concurrent flow runs (one per GPU: 1), `env` is added to its
        environment (and so to its flow runs'), e.g. {"CUDA_VISIBLE_DEVICES": "1"}."""
        name = name or f"local-{pool}-{len(self._workers)}"
        args = ["worker", "start", "--pool", pool, "--name", name, "--install-policy", "never"]
        if limit is not None:
            args += ["--limit", str(limit)]
        worker = self._spawn(
            args,
            f"worker-{name}.log" if name != f"local-{pool}-0" else f"worker-{pool}.log",
            env={**self.env, **(env or {})},
        )
        self._workers.append(worker)
        return worker

    def processes(self) -> list[psutil.Process]:
        """The server and workers started here, and every process they spawned (flow runs, their children)."""
        found = []
        for proc in [self._server, *self._workers]:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    root = psutil.Process(proc.pid)
                    found += [root, *root.children(recursive=True)]
        return found

    def wait_for_flow_runs(self, timeout_s: float = KILL_WAIT_S) -> list[psutil.Process]:
        """Wait until the processes the workers started (flow runs) have exited; returns those still running after
        `timeout_s`. A flow run's state turns final before its process exits, while its last log lines may still be
        on their way to the server: only after the exit are its logs complete."""
        runs: list[psutil.Process] = []
        for worker in self._workers:
            if worker.poll() is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    runs += psutil.Process(worker.pid).children(recursive=True)
        _wait_until_exited(runs, timeout_s=timeout_s)
        return [p for p in runs if not _has_exited(p)]

    def stop(self) -> None:
        """Workers first (two SIGTERMs each: a running worker ignores the first), then the server."""
        for worker in self._workers:
            _stop_process(worker, num_terms=2, grace_s=10)
        if self._server is not None:
            _stop_process(self._server, num_terms=1, grace_s=15)
        for log in self._logs:
            log.close()

    # -- the CLI and the API --------------------------------------------------------------------------------------
    def prefect(self, *args: str) -> str:
        """Run one `prefect` CLI command against this server; raise with its output when it fails."""
        proc = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        with open(self.stack_dir / "cli.log", "a") as log:
            log.write(f"$ prefect {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
        if self.echo:
            print(f"$ prefect {' '.join(args)}", flush=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"`prefect {' '.join(args)}` failed with code {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def create_pools(self, pools: tuple[str, ...] = POOLS) -> None:
        for pool in pools:
            self.prefect("work-pool", "create", pool, "--type", "process", "--overwrite")

    def deploy(self) -> None:
        """`prefect deploy --all` from the repository root, which holds prefect.yaml."""
        self.prefect("deploy", "--all")

    def run_deployment(
        self, name: str = DEMO_DEPLOYMENT, *, params: dict[str, Any] | None = None, timeout_s: int = 3600
    ) -> DeploymentRun:
        """`prefect deployment run <flow>/<deployment> --watch`; each parameter is passed as JSON with --param."""
        args = [
            sys.executable,
            "-m",
            "prefect",
            "deployment",
            "run",
            name,
            "--watch",
            "--watch-interval",
            "2",
            "--watch-timeout",
            str(timeout_s),
        ]
        for key, value in (params or {}).items():
            args += ["--param", f"{key}={json.dumps(value)}"]
        lines = []
        with (
            open(self.stack_dir / "run.log", "a") as log,
            subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as proc,
        ):
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                if self.echo:
                    print(line, end="", flush=True)
        output = "".join(lines)
        match = re.search(rf"UUID: ({_UUID.pattern})", output)
        flow_run_id = match.group(1) if match else None
        return DeploymentRun(flow_run_id=flow_run_id, returncode=proc.returncode, output=output)

    def api(self, method: str, path: str, payload: dict | None = None) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", json=payload, timeout=30)
        response.raise_for_status()
        return response.json()

    def flow_run(self, flow_run_id: str) -> dict:
        return self.api("GET", f"/flow_runs/{flow_run_id}")

    def artifacts(self, flow_run_id: str) -> list[dict]:
        """Every artifact a flow run (and its tasks) created."""
        return self.api("POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})

    def logs(self, flow_run_id: str) -> list[dict]:
        """Every log line of a flow run and its tasks, oldest first (what the UI's Logs tab shows)."""
        lines: list[dict] = []
        while True:  # the API returns at most 200 per call
            page = self.api(
                "POST",
                "/logs/filter",
                {
                    "logs": {"flow_run_id": {"any_": [flow_run_id]}},
                    "sort": "TIMESTAMP_ASC",
                    "offset": len(lines),
                    "limit": 200,
                },
            )
            lines += page
            if len(page) < 200:
                return lines


@contextlib.contextmanager
def local_stack(
    stack_dir: Path, *, ui: bool = False, echo: bool = False, worker_pool: str = "cpu"
) -> Iterator[LocalStack]:
    """A running server with the pools created, prefect.yaml deployed and a process worker on `worker_pool`."""
    stack = LocalStack(stack_dir, ui=ui, echo=echo)
    try:
        stack.start_server()
        stack.create_pools()
        stack.deploy()
        stack.start_worker(worker_pool)
        yield stack
    finally:
        stack.stop()


# ------------------------------------------------------------------------------------------------------- make demo


def _parse_params(texts: list[str]) -> dict[str, Any]:
    from cosmos_synth.recipe import parse_override

    return dict(parse_override(text) for text in texts)


def _demo(recipe: str, overrides: dict[str, Any], ui: bool) -> int:
    from cosmos_synth.recipe import load_run_config
    from flows.finetune_and_generate import OUTPUTS_ARTIFACT

    cfg = load_run_config(recipe, overrides)  # fail fast on a bad recipe or override, before starting anything
    run_dir = cfg.run_dir if cfg.run_dir.is_absolute() else REPO_ROOT / cfg.run_dir
    stack_dir = run_dir / "prefect"
    print(f"Starting a local Prefect server (logs: {stack_dir}) ...", flush=True)
    with local_stack(stack_dir, ui=ui, echo=True) as stack:
        if stack.ui_url:
            print(f"Prefect UI: {stack.ui_url} (while the demo runs)", flush=True)
        run = stack.run_deployment(DEMO_DEPLOYMENT, params={"recipe": recipe, "overrides": overrides})
        outputs = (
            [a for a in stack.artifacts(run.flow_run_id) if a.get("key") == OUTPUTS_ARTIFACT] if run.flow_run_id else []
        )
    if run.returncode != 0:
        print(
            f"\nThe flow run did not complete. Worker log ({stack_dir / 'worker-cpu.log'}) ends with:\n"
            f"{_tail(stack_dir / 'worker-cpu.log')}",
            file=sys.stderr,
        )
        return run.returncode
    print("\nOutputs:")
    # The artifact's pictures are inlined for the UI; the terminal gets the lines that name files.
    print(
        "\n".join(line for line in outputs[0]["data"].splitlines() if line and "](data:" not in line)
        if outputs
        else f"(no outputs artifact; see {run_dir})"
    )
    print(f"Prefect logs: {stack_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.local_stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help=f"run {DEMO_DEPLOYMENT} through a local server and process worker")
    demo.add_argument("--recipe", default="demo", help="recipe name under datasets/ or a .toml path")
    demo.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. train.num_epochs=2 (repeatable)",
    )
    demo.add_argument("--ui", action="store_true", help="serve the Prefect UI while the demo runs")
    args = parser.parse_args(argv)
    # make/CI may stop us with SIGTERM: turn it into SystemExit so the stack's finally-block stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return _demo(args.recipe, _parse_params(args.param), args.ui)


if __name__ == "__main__":
    sys.exit(main())
