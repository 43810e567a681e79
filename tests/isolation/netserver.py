"""Stand-in for "the internet" and for an instance metadata service, run inside the test's
own network namespace (tests/isolation/conftest.py starts it with `ip netns exec`).

- HTTP on ADDR:8080 answers every GET with `hello from the internet`;
- HTTP on 169.254.169.254:80 answers with `metadata: secret-role-credentials`;
- DNS on ADDR:53/udp answers A queries for `internet.test` with ADDR, NXDOMAIN otherwise.

Prints `ready` once all three listen; exits when stdin closes (bounded by the parent).
"""

import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADDR = sys.argv[1]
NAME = b"internet.test"


def http_server(host, port, body):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer((host, port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def dns_answer(query):
    (qid, _flags, qd, _an, _ns, _ar) = struct.unpack("!HHHHHH", query[:12])
    pos, labels = 12, []
    while query[pos]:
        n = query[pos]
        labels.append(query[pos + 1:pos + 1 + n])
        pos += 1 + n
    qtype, _qclass = struct.unpack("!HH", query[pos + 1:pos + 5])
    question = query[12:pos + 5]
    name = b".".join(labels).lower()
    if name == NAME and qtype == 1:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(ADDR)
        return struct.pack("!HHHHHH", qid, 0x8180, qd, 1, 0, 0) + question + answer
    rcode = 0x8180 if name == NAME else 0x8183  # no AAAA record / NXDOMAIN
    return struct.pack("!HHHHHH", qid, rcode, qd, 0, 0, 0) + question


def dns_server():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ADDR, 53))

    def loop():
        while True:
            data, peer = s.recvfrom(512)
            try:
                s.sendto(dns_answer(data), peer)
            except Exception:  # a malformed query gets no answer
                pass

    threading.Thread(target=loop, daemon=True).start()


http_server(ADDR, 8080, "hello from the internet")
http_server("169.254.169.254", 80, "metadata: secret-role-credentials")
dns_server()
print("ready", flush=True)
sys.stdin.read()
