"""``edge-sdk station``: the ward station - subscribes to every bed over MQTT and serves the ward page.

    edge-sdk station --mqtt mqtts://broker.local:8883 --ca-file ca.pem --username station \\
        --password-file /etc/edge-sdk-station/mqtt-password [--listen 127.0.0.1:8080]
    edge-sdk station passwd --users-file /etc/edge-sdk-station/users NAME     # add a user / change a password

The page binds to loopback unless ``--listen`` says otherwise; any other address needs ``--users-file``
(login) and ``--tls-cert``/``--tls-key`` (HTTPS), or the station refuses to start.

Exit codes: 0 stopped cleanly (SIGINT/SIGTERM); 2 one ``error: ...`` line naming the bad flag or file.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from edge_sdk.errors import InputError
from edge_sdk.forward.messages import DEFAULT_TOPIC
from edge_sdk.station.settings import DEFAULT_LISTEN, build_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt", metavar="URL", help="the broker: mqtts://HOST[:PORT] (mqtt:// only with --insecure)")
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where the page is served (default {DEFAULT_LISTEN})",
    )
    parser.add_argument("--ca-file", type=Path, help="CA certificate(s) that signed the broker's certificate (PEM)")
    parser.add_argument("--username", help="the station's broker user")
    parser.add_argument("--password-file", type=Path, help="file whose first line is the broker password")
    parser.add_argument(
        "--users-file", type=Path, help="page logins (edge-sdk station passwd); required beyond loopback"
    )
    parser.add_argument(
        "--tls-cert", type=Path, help="the page's own HTTPS certificate (PEM); required beyond loopback"
    )
    parser.add_argument("--tls-key", type=Path, help="the key of --tls-cert (PEM)")
    parser.add_argument(
        "--topic", default=DEFAULT_TOPIC, help=f"topic template of the beds (default {DEFAULT_TOPIC!r})"
    )
    parser.add_argument("--client-id", help="MQTT client id, unique per station (default edge-sdk-station-HOST-PID)")
    parser.add_argument("--insecure", action="store_true", help="allow mqtt:// without TLS (tests, labs only)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="station_command", metavar="ACTION")
    p = sub.add_parser("passwd", help="add a page user or change a password (read from the terminal or stdin)")
    p.add_argument("--users-file", dest="passwd_users_file", type=Path, required=True, help="the users file")
    p.add_argument("name", help="the user name (shown as who acknowledged an alert)")


def _passwd(args: argparse.Namespace) -> int:
    from edge_sdk.station.users import check_name, set_password

    path: Path = args.passwd_users_file
    check_name(args.name)
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise InputError("the two passwords differ; nothing changed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not path.parent.is_dir():
        raise InputError(f"--users-file {path}: the folder {path.parent} does not exist")
    try:
        added = set_password(path, args.name, password)
    except OSError as exc:
        raise InputError(f"--users-file {path}: cannot be written ({exc.strerror})") from None
    print(f"{'added' if added else 'changed the password of'} {args.name} in {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.station_command == "passwd":
        return _passwd(args)
    if not args.mqtt:
        raise InputError("--mqtt: required, e.g. --mqtt mqtts://station.local:8883")
    settings = build_settings(
        mqtt=args.mqtt,
        listen=args.listen,
        ca_file=args.ca_file,
        username=args.username,
        password_file=args.password_file,
        users_file=args.users_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        topic=args.topic,
        insecure=args.insecure,
        client_id=args.client_id,
    )
    line = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    ours = logging.getLogger("edge_sdk")  # shown on stderr by edge_sdk.cli.main: a server's lines carry the time
    ours.setLevel(args.log_level)
    for handler in ours.handlers:
        handler.setFormatter(logging.Formatter(line))
    logging.basicConfig(level=args.log_level, format=line, stream=sys.stderr)  # other libraries' loggers
    from edge_sdk.station.users import load_users

    if settings.web.users_file:
        load_users(settings.web.users_file)  # a malformed file is an error now, not at the first login
    from edge_sdk.station import serve

    serve(settings)
    return 0
