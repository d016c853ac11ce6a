"""Long-running processes: web, worker, scheduler, and `up`, which starts all three for a laptop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from ..local_redis import LocalRedis, free_port
from .context import cli_runtime

__all__ = ["cron", "run", "up", "worker"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--workers", type=int, help="gunicorn worker processes [default: WEB_CONCURRENCY, else one per core]"
)
def run(host: str, port: int, workers: int | None) -> None:
    """Serve the web app with gunicorn."""
    cli_runtime()  # fail now, with the variable named, rather than inside a gunicorn worker
    os.execvp(  # noqa: S606 - replace this process with gunicorn, arguments are ours
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:widget_server.gunicorn_conf",
            "--bind",
            f"{host}:{port}",
            *(["--workers", str(workers)] if workers else []),
            "widget_server.wsgi:app",
        ],
    )


@click.command()
@click.option("--queues", default="crm,default,mis", show_default=True)
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker(queues: str, burst: bool) -> None:
    """Run an rq worker (with rq's scheduler for delayed retries)."""
    from rq import Worker

    rt = cli_runtime()
    if rt.settings.jobs_in_process:
        raise click.ClickException("REDIS_URL=memory:// runs jobs in-process; there is nothing for a worker")
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [n for n in names if n not in rt.queues]
    if unknown:
        raise click.ClickException(f"--queues: unknown {unknown}; known: {sorted(rt.queues)}")
    Worker([rt.queue(n) for n in names], connection=rt.redis).work(with_scheduler=True, burst=burst)


@click.command()
def cron() -> None:
    """Run the one periodic scheduler. A second one refuses to start (rq's cron has no lock of its own)."""
    from ..jobs.schedule import SchedulerAlreadyRunning, build_scheduler

    rt = cli_runtime()
    if rt.settings.jobs_in_process:
        raise click.ClickException("REDIS_URL=memory:// has no scheduler; use a real Redis")
    scheduler = build_scheduler(rt.redis)
    try:
        scheduler.acquire()
    except SchedulerAlreadyRunning as exc:
        raise click.ClickException(str(exc)) from None
    try:
        scheduler.start()
    finally:
        scheduler.release()


# --- up ---------------------------------------------------------------------------------------------------


def _start_local_redis(instance: Path) -> tuple[str, subprocess.Popen | None]:
    """REDIS_URL if set; else a private redis-server on loopback without persistence; else memory://."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    if shutil.which("redis-server") is None:
        return "memory://", None
    server = LocalRedis(instance, port=6390)
    return server.url, server.process


def _wait_ready(url: str, timeout_s: float = 30) -> dict:
    import json
    import urllib.request

    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310 - loopback
                return json.loads(response.read())
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.3)
    raise click.ClickException(f"the web process did not become ready at {url}/readyz: {last}")


@click.command()
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--check", is_flag=True, help="Start, verify /readyz and the demo key, then stop.")
def up(port: int, check: bool) -> None:
    """Quick start: migrate, seed a demo sandbox portal, start Redis, web, worker and scheduler."""
    from ..config import load_settings
    from ..migrations import upgrade
    from .demo import ensure_demo

    instance = load_settings().instance_path
    instance.mkdir(parents=True, exist_ok=True)
    redis_url, redis_process = _start_local_redis(instance)
    env = {**os.environ, "REDIS_URL": redis_url}
    os.environ["REDIS_URL"] = redis_url
    port = free_port(port)
    base_url = f"http://127.0.0.1:{port}"
    env.setdefault("PUBLIC_BASE_URL", base_url)
    os.environ.setdefault("PUBLIC_BASE_URL", base_url)

    rt = cli_runtime()
    upgrade(rt.settings.database_url)
    demo_info = ensure_demo(rt)

    children: list[subprocess.Popen] = []
    python = sys.executable
    children.append(
        subprocess.Popen(
            [
                python,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "widget_server.wsgi:app",
            ],
            env=env,
        )
    )
    if redis_url == "memory://":
        click.secho(
            "WARNING: no redis-server found and REDIS_URL unset: jobs run in-process inside the web "
            "request, periodic jobs are OFF. Install redis-server for the real setup.",
            fg="yellow",
            err=True,
        )
    else:
        children.append(subprocess.Popen([python, "-m", "widget_server.cli.entry", "worker"], env=env))
        children.append(subprocess.Popen([python, "-m", "widget_server.cli.entry", "cron"], env=env))

    def stop(*_args: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        ready = _wait_ready(base_url)
        click.echo("")
        click.secho(f"ClinicBridge is running at {base_url}", fg="green", bold=True)
        click.echo(
            f"  readiness:   {base_url}/readyz -> {ready['status']} "
            f"(database {ready['checks']['database']['ok']}, redis {ready['checks']['redis']['ok']})"
        )
        click.echo(f"  redis:       {redis_url}")
        click.echo(f"  demo portal: {demo_info['slug']} (sandbox CRM, {demo_info['deals']} patient deals)")
        click.echo(f"  admin key:   {demo_info['api_key']}")
        click.echo(
            f"  try:         curl -H 'Authorization: Bearer {demo_info['api_key']}' {base_url}/api/v1/portal"
        )
        click.echo(f"  API docs:    {base_url}/api/v1/openapi.json")
        click.secho(f"  demo panel:  {base_url}/static/widget/demo/#key={demo_info['api_key']}", bold=True)
        click.echo("               (in a browser: the amoCRM card and the Bitrix24 tab, no CRM account)")
        if check:
            _check_key(base_url, demo_info["api_key"])
            _check_demo_page(base_url)
            click.echo("check passed: /readyz is ready, the demo admin key works, the demo page is served")
            return
        click.echo("Press Ctrl+C to stop.")
        while all(child.poll() is None for child in children):
            time.sleep(1)
        raise click.ClickException("a child process exited; see its output above")
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def _check_demo_page(base_url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/static/widget/demo/", timeout=5) as response:  # noqa: S310
        if response.status != 200 or b"clinicbridge" not in response.read().lower():
            raise click.ClickException("the demo page is not served at /static/widget/demo/")


def _check_key(base_url: str, key: str) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(f"{base_url}/api/v1/portal", headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        document = json.loads(response.read())
    if "admin" not in document.get("your_roles", []):
        raise click.ClickException(f"demo key did not authenticate as admin: {document}")
