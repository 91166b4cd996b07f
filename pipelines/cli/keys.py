"""``backscore keys new|list|revoke``: API keys for the service (the format: :mod:`pipelines.access`).

    backscore keys new NAME [--file F] [--rpm N] [--jobs N] [--live-minutes N]
    backscore keys list [--file F] [--json]
    backscore keys revoke NAME [--file F]

``--file`` defaults to ``$BACKSCORE_API_KEYS_FILE``. ``new`` prints the key on stdout, once (it is
never stored: only its SHA-256 goes into the file, created mode 0600); without any key file it
writes nothing and prints the ``NAME:SHA256`` entry for ``BACKSCORE_API_KEYS`` instead. ``list``
shows names and quotas, never hashes.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engines.settings import settings
from pipelines.access import KeyEntry, KeyQuotas, check_name, check_quotas, hash_key, new_key, parse_env_keys
from pipelines.cli.args import Handler
from pipelines.cli.output import print_json
from pipelines.errors import OptionError

QUOTA_FIELDS = ("rpm", "jobs", "live_minutes")


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    keys = sub.add_parser("keys", help="API keys for the service (new, list, revoke)")
    ks = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    file_help = "the key file (default $BACKSCORE_API_KEYS_FILE)"
    new = ks.add_parser("new", help="make a key: printed once, its hash appended to the key file")
    new.add_argument("name", help="who the key is for (letters, digits, '.', '_', '-')")
    new.add_argument("--file", help=file_help + "; neither: print the BACKSCORE_API_KEYS entry, write nothing")
    new.add_argument("--rpm", type=int, help="requests a minute (default $BACKSCORE_KEY_RPM)")
    new.add_argument("--jobs", type=int, help="uploads and jobs in flight (default $BACKSCORE_KEY_JOBS)")
    new.add_argument("--live-minutes", type=float,
                     help="live-session minutes a day (default $BACKSCORE_KEY_LIVE_MINUTES)")
    ls = ks.add_parser("list", help="the keys' names and quotas (never their hashes)")
    ls.add_argument("--file", help=file_help)
    ls.add_argument("--json", action="store_true")
    rv = ks.add_parser("revoke", help="remove a key from the key file")
    rv.add_argument("name")
    rv.add_argument("--file", help=file_help)
    return {"keys": _cmd_keys}


def _cmd_keys(args: argparse.Namespace) -> int:
    path = args.file or settings().api_keys_file
    if args.keys_command == "new":
        return _new(args, path)
    if args.keys_command == "list":
        return _list(args, path)
    from pipelines.access import remove_key

    if not path:
        raise OptionError("keys revoke needs the key file: --file F or BACKSCORE_API_KEYS_FILE")
    remove_key(path, args.name)
    print(f"backscore: revoked key {args.name!r} in {path} (a running service drops it within seconds)",
          file=sys.stderr)
    return 0


def _new(args: argparse.Namespace, path: str | None) -> int:
    from pipelines.access import add_key

    quotas = check_quotas(args.rpm, args.jobs, args.live_minutes)
    if path:
        key, _ = add_key(path, args.name, quotas)
        print(key)
        print(f"backscore: added key {args.name!r} to {path}; this is the only time the key is shown: "
              "store it now", file=sys.stderr)
        return 0
    check_name(args.name)
    if quotas != KeyQuotas():
        raise OptionError("quotas need a key file (--file F or BACKSCORE_API_KEYS_FILE)")
    key = new_key()
    print(key)
    print(f"backscore: no key file (--file or BACKSCORE_API_KEYS_FILE): nothing written; give the service this "
          f"entry in BACKSCORE_API_KEYS (comma-separated):\n{args.name}:{hash_key(key)}", file=sys.stderr)
    return 0


def _records(entries: list[KeyEntry]) -> list[dict[str, Any]]:
    s = settings()
    defaults = KeyQuotas(rpm=s.key_rpm, jobs=s.key_jobs, live_minutes=s.key_live_minutes)
    out = []
    for e in entries:
        q = e.quotas.or_defaults(defaults)
        out.append({"name": e.name, "created": e.created, **{f: getattr(q, f) for f in QUOTA_FIELDS},
                    "defaults": [f for f in QUOTA_FIELDS if getattr(e.quotas, f) is None]})
    return out


def _list(args: argparse.Namespace, path: str | None) -> int:
    from pipelines.access import load_key_file

    env = settings().api_keys
    if not path and not env:
        raise OptionError("no keys: pass --file F, or set BACKSCORE_API_KEYS_FILE or BACKSCORE_API_KEYS")
    entries = load_key_file(path) if path else parse_env_keys(env or "")
    records = _records(entries)
    if args.json:
        print_json(records)
        return 0
    if not records:
        print(f"(no keys: add one with `backscore keys new NAME --file {path}`)")
        return 0

    def cell(r: dict[str, Any], f: str) -> str:
        v = r[f]
        text = f"{v:g}" if isinstance(v, float) else str(v)
        return text + (" (default)" if f in r["defaults"] else "")

    rows = [("name", "requests/min", "jobs", "live min/day", "created")]
    rows += [(r["name"], cell(r, "rpm"), cell(r, "jobs"), cell(r, "live_minutes"), r["created"] or "-")
             for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    return 0
