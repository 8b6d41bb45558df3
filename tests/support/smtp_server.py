#!/usr/bin/python3
"""A loopback SMTP server for Cascade's integration tests (Debian python3-aiosmtpd).

Run with /usr/bin/python3 (the pyenv python3 on PATH lacks aiosmtpd):

  smtp_server.py --port P --out events.jsonl [--cert C --key K] [--implicit-tls]
                 [--require-starttls] [--auth USER:PASS] [--auth-only PLAIN|LOGIN]

Prints "ready PORT" on stdout once it accepts connections. Every event is one JSON line
appended (and flushed) to --out:
  {"event":"connect","peer":"127.0.0.1:5555"}
  {"event":"message","peer":...,"tls":true,"auth":"user","mail_from":...,"rcpt_tos":[...],
   "raw":"...","subject":"...","text":"...","html":"...","message_id":"..."}
  {"event":"dropped", ...same fields as message...}

Fault injection by recipient local part:
  fail451-N@...  -> "451 4.3.0 Try again later" for the first N RCPTs of that address
  reject550@...  -> "550 5.1.1 User unknown" at RCPT
  drop@...       -> the whole message is received, then the connection is closed
                    without a reply to the final "."
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword, SMTP

lock = threading.Lock()
out = None
tries = {}


def emit(obj):
    with lock:
        out.write(json.dumps(obj) + "\n")
        out.flush()


def peer_of(session):
    p = session.peer
    if isinstance(p, (tuple, list)) and len(p) >= 2:
        return "%s:%s" % (p[0], p[1])
    return str(p)


class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("fail451-"):
            n = int(local.split("-", 1)[1] or "0")
            seen = tries.get(address, 0)
            tries[address] = seen + 1
            if seen < n:
                emit({"event": "rcpt451", "rcpt": address, "try": seen + 1})
                return "451 4.3.0 Try again later"
        if local == "reject550":
            emit({"event": "rcpt550", "rcpt": address})
            return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, bytes):
            raw_text = raw.decode("utf-8", "replace")
        else:
            raw_text = raw
            raw = raw.encode("utf-8")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text, html = "", ""
        for part in msg.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            if ctype == "text/plain" and not text:
                text = part.get_content()
            elif ctype == "text/html" and not html:
                html = part.get_content()
        auth = session.auth_data
        if isinstance(auth, LoginPassword):
            auth = auth.login.decode("utf-8", "replace")
        elif auth is not None:
            auth = str(auth)
        record = {
            "peer": peer_of(session),
            "tls": (session.ssl is not None
                    or server.transport.get_extra_info("ssl_object") is not None),
            "auth": auth,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "raw": raw_text,
            "subject": str(msg.get("Subject", "")),
            "text": text,
            "html": html,
            "message_id": str(msg.get("Message-ID", "")),
            "date": str(msg.get("Date", "")),
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "content_type": msg.get_content_type(),
        }
        if any(r.split("@", 1)[0].lower() == "drop" for r in envelope.rcpt_tos):
            record["event"] = "dropped"
            emit(record)
            server.transport.abort()
            return "250 OK (never sent)"
        record["event"] = "message"
        emit(record)
        return "250 2.0.0 OK queued as M%d" % (abs(hash(record["message_id"])) % 100000000)


class CountingSMTP(SMTP):
    def connection_made(self, transport):
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        emit({"event": "connect", "peer": "%s:%s" % (peer[0], peer[1])})


class TestController(Controller):
    def __init__(self, handler, smtp_kwargs, **kwargs):
        self.smtp_kwargs = smtp_kwargs
        super().__init__(handler, **kwargs)

    def factory(self):
        return CountingSMTP(self.handler, **self.smtp_kwargs)


def main():
    global out
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--require-starttls", action="store_true")
    ap.add_argument("--auth")
    ap.add_argument("--auth-only", help="offer only this AUTH mechanism (PLAIN or LOGIN)")
    args = ap.parse_args()
    out = open(args.out, "a", encoding="utf-8")

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    smtp_kwargs = {"hostname": "mx.test", "ident": "cascade-test-smtp",
                   "decode_data": False, "enable_SMTPUTF8": True}
    if tls_context is not None and not args.implicit_tls:
        smtp_kwargs["tls_context"] = tls_context
        smtp_kwargs["require_starttls"] = args.require_starttls
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            emit({"event": "auth", "mechanism": mechanism, "ok": ok})
            # handled=False: aiosmtpd then answers 535 itself on failure.
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        smtp_kwargs["authenticator"] = authenticator
        if args.auth_only:
            others = {"PLAIN", "LOGIN"} - {args.auth_only.upper()}
            smtp_kwargs["auth_exclude_mechanism"] = sorted(others)
        smtp_kwargs["auth_require_tls"] = tls_context is not None
    else:
        smtp_kwargs["auth_require_tls"] = False

    kwargs = {"hostname": "127.0.0.1", "port": args.port}
    if args.implicit_tls:
        kwargs["ssl_context"] = tls_context
    controller = TestController(Handler(), smtp_kwargs, **kwargs)
    controller.start()
    print("ready %d" % args.port, flush=True)
    parent = os.getppid()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Exit on SIGTERM, or when the test process that started us is gone.
    while not stop.wait(0.5):
        if os.getppid() != parent:
            break
    controller.stop()


if __name__ == "__main__":
    main()
