#!/usr/bin/env python3
"""A real SMTP server for the mail tests: it accepts mail and files it on disk.

Each accepted message is written as DIR/<seq>.eml (the DATA as received, CRLF line
ends) and then DIR/<seq>.json (its envelope). Both are written to a hidden temporary
name and renamed into place, so a <seq>.json that exists always has its complete
<seq>.eml beside it. Sequence numbers count from 1, or go on after the highest one
already in DIR (a sink restarted on the same directory overwrites nothing).

On start it prints one line, `READY <port>`, to stdout; it serves until SIGTERM or
SIGINT and then exits 0.

Options:
  --host H --port N        listen address (port 0 picks a free port)
  --dir DIR                where messages are written (created if missing)
  --starttls CERT KEY      offer STARTTLS and require it before MAIL
  --tls CERT KEY           implicit TLS (SMTPS) from the first byte
  --auth USER:PASS         require AUTH PLAIN or LOGIN (only offered after TLS
                           when TLS is on)
  --reject PREFIX          550 5.1.1 for recipients whose local part starts so
  --tempfail PREFIX        451 4.3.0 for recipients whose local part starts so
(--reject and --tempfail may be given more than once.)
"""

import argparse
import asyncio
import json
import logging
import os
import re
import resource
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult

REJECT = "550 5.1.1 mailbox unavailable"
TEMPFAIL = "451 4.3.0 mailbox temporarily unavailable"


def parse_args():
    p = argparse.ArgumentParser(description="SMTP sink for the mail tests")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--dir", required=True)
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    tls.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth", metavar="USER:PASS")
    p.add_argument("--reject", action="append", default=[], metavar="PREFIX")
    p.add_argument("--tempfail", action="append", default=[], metavar="PREFIX")
    args = p.parse_args()
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth takes USER:PASS")
    return args


def first_free_seq(directory):
    """One past the highest <seq>.json already in the directory."""
    seqs = [int(m.group(1)) for name in os.listdir(directory)
            if (m := re.fullmatch(r"(\d+)\.json", name))]
    return max(seqs, default=0) + 1


def write_atomically(path, data):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Handler:
    """Recipient checks and filing of accepted messages; kept light on purpose."""

    def __init__(self, directory, reject, tempfail, auth):
        self.dir = directory
        self.auth = auth
        self.reject = tuple(reject)
        self.tempfail = tuple(tempfail)
        self.seq = first_free_seq(directory)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not self.auth:
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rsplit("@", 1)[0]
        if self.reject and local.startswith(self.reject):
            return REJECT
        if self.tempfail and local.startswith(self.tempfail):
            return TEMPFAIL
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        seq = self.seq
        self.seq += 1
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        ssl_object = server.transport.get_extra_info("ssl_object")
        login = getattr(session.auth_data, "login", None)
        meta = {
            "seq": seq,
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "helo": session.host_name,
            "tls": ssl_object is not None,
            "tls_version": ssl_object.version() if ssl_object is not None else None,
            "auth": bool(session.authenticated),
            "auth_user": login.decode("utf-8", "replace")
            if isinstance(login, bytes) else login,
            "size": len(content),
        }
        write_atomically(os.path.join(self.dir, f"{seq}.eml"), content)
        write_atomically(os.path.join(self.dir, f"{seq}.json"),
                         json.dumps(meta).encode())
        return "250 2.0.0 Ok: queued as %d" % seq


def make_authenticator(user, password):
    user, password = user.encode(), password.encode()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (mechanism in ("PLAIN", "LOGIN")
              and getattr(auth_data, "login", None) == user
              and getattr(auth_data, "password", None) == password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return authenticator


def server_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve(args):
    os.makedirs(args.dir, exist_ok=True)
    handler = Handler(args.dir, args.reject, args.tempfail, args.auth is not None)
    starttls_ctx = server_context(*args.starttls) if args.starttls else None
    implicit_ctx = server_context(*args.tls) if args.tls else None

    smtp_kwargs = {
        # A fixed name: aiosmtpd would otherwise resolve the FQDN per connection.
        "hostname": "localhost",
        "ident": "confab-test-sink",
        "enable_SMTPUTF8": True,
        "tls_context": starttls_ctx,
        "require_starttls": starttls_ctx is not None,
        # Implicit TLS is on the transport, which aiosmtpd does not see as TLS.
        "auth_require_tls": starttls_ctx is not None,
    }
    if args.auth is not None:
        user, password = args.auth.split(":", 1)
        smtp_kwargs["auth_required"] = True
        smtp_kwargs["authenticator"] = make_authenticator(user, password)
    else:
        smtp_kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]

    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            lambda: SMTP(handler, loop=loop, **smtp_kwargs),
            host=args.host, port=args.port, ssl=implicit_ctx,
            reuse_address=True, backlog=1024,
        )
    except OSError as e:
        sys.exit(f"sink.py: cannot listen on {args.host}:{args.port}: {e}")
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    await stop.wait()
    server.close()


def main():
    args = parse_args()
    # aiosmtpd warns when AUTH is required without TLS, which the tests do on purpose.
    warnings.filterwarnings("ignore")
    # aiosmtpd logs a deprecation warning per AUTH; keep stderr for real errors.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    # Many concurrent connections: lift the soft limit on open files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
