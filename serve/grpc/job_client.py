"""The async job commands of ``python -m serve.grpc.client``: ``job``, ``watch``, ``cancel``.

::

    python -m serve.grpc.client job clip.mp4 --style lofi --seed 2              # start, follow, list the result paths
    python -m serve.grpc.client job clip.mp4 --download out/ [--http-base http://127.0.0.1:8000]
    python -m serve.grpc.client job --from-job ID --style epic                  # new music on ID's analysis
    python -m serve.grpc.client job clip.mp4 --kind recommend --top-k 3
    python -m serve.grpc.client job clip.mp4 --options '{"outputs": ["bgm", "midi"]}'
    python -m serve.grpc.client watch ID [--download out/]                      # follow a job started elsewhere
    python -m serve.grpc.client cancel ID

``job`` starts the job (``StartJob``: the video inline, or ``from_job``), then follows it like ``watch``
(``WatchJob``): one line per change of state, stage or whole percent, with the ETA; when the job is done,
its result paths (role -> HTTP path, as ``JobStatus.results`` has them). ``--download DIR`` fetches each
over HTTP from ``--http-base`` (urllib, with the API key as ``Authorization: Bearer``) into DIR, refusing
(exit 3, as an :class:`~pipelines.errors.OutputError`) before fetching anything if one of the files is
already there. A job that fails or is cancelled prints its error type and message and exits 1; Ctrl-C
only stops watching (exit 130): the job goes on. The options are ``--options`` (a JSON object of the fields of
HTTP ``POST /v1/jobs``) with ``--kind``, ``--from-job`` and the shared flags laid over it where they apply:
``--style``/``--seed``/``--loudness`` (score), ``--top-k``/``--per-segment`` (recommend), ``--library``
(score, recommend); a flag for another kind is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from pipelines.errors import OutputError, error_status
from serve.proto.backscore.v1 import backscore_pb2 as pb


class JobClient(Protocol):
    """What the job commands need of :class:`serve.grpc.client.BackscoreClient` (which imports this module)."""

    def start_job(self, path: str | None, options: Mapping[str, Any]) -> pb.JobStatus: ...

    def watch_job(self, job_id: str) -> Iterator[pb.JobStatus]: ...

    def cancel_job(self, job_id: str) -> pb.JobStatus: ...


JOB_COMMANDS = ("job", "watch", "cancel")
TERMINAL = ("done", "failed", "cancelled")
DEFAULT_HTTP_BASE = "http://127.0.0.1:8000"
#: The shared flags a job takes (argparse dest -> option field, the kinds it applies to).
JOB_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "style": ("style", ("score",)),
    "seed": ("seed", ("score",)),
    "loudness": ("loudness", ("score",)),
    "top_k": ("top_k", ("recommend",)),
    "per_segment": ("per_segment", ("recommend",)),
    "library": ("library", ("score", "recommend")),
}
#: Seconds a download may wait for the server's next bytes.
DOWNLOAD_TIMEOUT_S = 60.0


class DownloadError(Exception):
    """A result file could not be fetched over HTTP (the message says which, and why)."""


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """The job commands' own flags (the shared ones -- style, seed, ... -- are the parser's already)."""
    g = p.add_argument_group("async jobs (job, watch, cancel)")
    g.add_argument("--kind", choices=["score", "recommend", "analyze"], default=None,
                   help="job: what to make (default score)")
    g.add_argument("--options", default=None, metavar="JSON",
                   help="job: the fields of HTTP POST /v1/jobs as a JSON object (the flags above override them)")
    g.add_argument("--from-job", default=None, metavar="ID",
                   help="job: new music on this earlier job's video and analysis (no VIDEO)")
    g.add_argument("--download", default=None, metavar="DIR",
                   help="job/watch: fetch the result files over HTTP into DIR (never overwrites)")
    g.add_argument("--http-base", default=DEFAULT_HTTP_BASE, metavar="URL",
                   help=f"job/watch: the HTTP API the result paths are on (default {DEFAULT_HTTP_BASE})")


def check_readable(p: argparse.ArgumentParser, path: str) -> None:
    """``p.error`` (exit 2) unless ``path`` is a file this process can read."""
    if os.path.isdir(path):
        p.error(f"{path} is a folder, not a video file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        p.error(f"cannot read {path}: {exc.strerror or exc}")


def job_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The ``job`` command's options (``--options`` with the flags laid over it); ``p.error`` when they are bad."""
    options: dict[str, Any] = {}
    if args.options is not None:
        try:
            parsed = json.loads(args.options)
        except ValueError as exc:
            p.error(f"--options is not valid JSON: {exc}")
        if not isinstance(parsed, dict):
            p.error("--options must be a JSON object, e.g. '{\"style\": \"lofi\"}'")
        options.update(parsed)
    if args.kind:
        options["kind"] = args.kind
    if args.from_job:
        options["from_job"] = args.from_job
    kind = options.get("kind") or "score"
    for dest, (field, kinds) in JOB_FLAGS.items():
        value = getattr(args, dest, None)
        if value is None or value is False or value == "":
            continue  # not given
        if kind not in kinds:
            p.error(f"--{dest.replace('_', '-')} applies to {' and '.join(kinds)} jobs, not {kind}")
        options[field] = value
    return options


def check_job_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validate a job command's arguments (``p.error``, exit 2); a ``job`` gets ``args.job_options``."""
    if args.download is not None:
        scheme = urllib.parse.urlsplit(args.http_base).scheme
        if scheme not in ("http", "https"):
            p.error(f"--http-base must be an http:// or https:// URL (got {args.http_base!r})")
    if args.command in ("watch", "cancel"):
        if not args.video:
            p.error(f"{args.command} needs a job id")
        return
    args.job_options = job_options(p, args)
    from_job = args.job_options.get("from_job")
    if from_job and args.video:
        p.error("job: give a VIDEO or --from-job, not both")
    if not from_job:
        if not args.video:
            p.error("job needs a video (or --from-job ID)")
        check_readable(p, args.video)


# ----------------------------------------------------------------------------- following a job


def progress_line(status: pb.JobStatus) -> str:
    """One line for a job's status: id, state, stage, whole percent and (while it runs) the ETA."""
    eta = f"  ETA {status.eta_s:.0f}s" if status.HasField("eta_s") and status.state not in TERMINAL else ""
    return f"job {status.id}: {status.state:<9} {status.stage or '-':<10} {int(status.fraction * 100):3d}%{eta}"


def follow(client: JobClient, job_id: str) -> pb.JobStatus | None:
    """Watch the job to its end, printing a line when its state, stage or whole percent changes; its last status
    (None if the stream ended without one)."""
    shown: tuple[str, str, int] | None = None
    last: pb.JobStatus | None = None
    for status in client.watch_job(job_id):
        key = (status.state, status.stage, int(status.fraction * 100))
        if key != shown:
            print(progress_line(status), flush=True)
            shown = key
        last = status
    return last


def result_targets(results: Mapping[str, str], folder: str) -> list[tuple[str, str, str]]:
    """``(role, path, file)`` for each result: the file in ``folder`` named as the path's last segment.
    :class:`OutputError` if one is already there (nothing is fetched then) or two would share a name."""
    targets: list[tuple[str, str, str]] = []
    for role, path in sorted(results.items()):
        name = posixpath.basename(urllib.parse.urlsplit(path).path)
        if name in ("", ".", ".."):
            raise OutputError(f"the server's path for {role} ({path!r}) names no file")
        targets.append((role, path, os.path.join(folder, name)))
    files = [t[2] for t in targets]
    if len(set(files)) != len(files):
        raise OutputError("two results have the same file name; download them into separate folders")
    existing = [f for f in files if os.path.lexists(f)]
    if existing:
        raise OutputError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: not overwriting")
    return targets


def _http_error(exc: urllib.error.HTTPError) -> str:
    """``HTTP 401 Unauthorized: <message>`` from the API's ``{"error": {"type", "message"}}`` body."""
    try:
        err = json.loads(exc.read().decode("utf-8", "replace"))["error"]
        return f"HTTP {exc.code} {err['type']}: {err['message']}"
    except (ValueError, KeyError, TypeError, OSError):
        return f"HTTP {exc.code} {exc.reason}"


def fetch(url: str, target: str, api_key: str | None, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> int:
    """GET ``url`` into a new file ``target`` (never an existing one; removed again if the transfer fails);
    its size in bytes."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            try:
                out = open(target, "xb")  # noqa: SIM115 -- closed below; "x": never overwrite
            except FileExistsError:
                raise OutputError(f"{target} already exists: not overwriting") from None
            except OSError as exc:
                raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
            try:
                with out:
                    shutil.copyfileobj(response, out, 1024 * 1024)
            except BaseException:
                os.unlink(target)
                raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: {_http_error(exc)}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot reach {url}: {exc.reason}") from None
    except OSError as exc:  # the connection dropped or stalled (TimeoutError), or the disk filled up
        raise DownloadError(f"{url}: {exc}") from None
    return os.path.getsize(target)


def download_results(results: Mapping[str, str], folder: str, http_base: str,
                     api_key: str | None) -> list[tuple[str, str, int]]:
    """Fetch every result into ``folder`` (made if missing); ``(role, file, bytes)`` each. Refuses
    (:class:`OutputError`) before fetching anything when a file is already there."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"--download {folder}: not a folder")
    targets = result_targets(results, folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make {folder}: {exc.strerror or exc}") from None
    base = http_base.rstrip("/")
    done = []
    for role, path, target in targets:
        url = path if urllib.parse.urlsplit(path).scheme else base + "/" + path.lstrip("/")
        done.append((role, target, fetch(url, target, api_key)))
    return done


def finish(status: pb.JobStatus, args: argparse.Namespace) -> int:
    """Report a job's end: the result paths (and downloads), or its error. The exit code."""
    if status.state != "done":
        what = f"{status.error_type}: {status.error_message}" if status.error_type else "(no error given)"
        print(f"backscore: error: job {status.id} {status.state}: {what}", file=sys.stderr)
        return 1
    print("results:")
    for role, path in sorted(status.results.items()):
        print(f"  {role:<15} {path}")
    if args.download is not None:
        fetched = download_results(status.results, args.download, args.http_base, args.api_key)
        print("downloaded:")
        for role, target, size in fetched:
            print(f"  {role:<15} -> {target} ({size} bytes)")
    return 0


def run_job_command(client: JobClient, args: argparse.Namespace) -> int:
    """``job``, ``watch`` or ``cancel`` (arguments checked by :func:`check_job_args`); the exit code. gRPC errors
    propagate (the caller prints them)."""
    if args.command == "cancel":
        print(progress_line(client.cancel_job(args.video)))
        return 0
    if args.command == "job":
        started = client.start_job(None if args.job_options.get("from_job") else args.video, args.job_options)
        print(f"job {started.id}: started ({started.kind})", flush=True)
        job_id = started.id
    else:
        job_id = args.video
    try:
        last = follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped watching job {job_id}; it goes on (watch {job_id} / cancel {job_id})", file=sys.stderr)
        return 130
    if last is None or last.state not in TERMINAL:
        print(f"backscore: error: the watch of job {job_id} ended before the job did", file=sys.stderr)
        return 1
    try:
        return finish(last, args)
    except OutputError as exc:
        print(f"backscore: error: {exc}; the job's files stay on the server until it expires: "
              f"watch {job_id} --download ANOTHER_DIR", file=sys.stderr)
        return error_status(exc).exit_code
    except DownloadError as exc:
        print(f"backscore: error: download failed: {exc}", file=sys.stderr)
        return 1
