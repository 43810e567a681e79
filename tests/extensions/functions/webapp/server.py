"""A small web application (stdlib) served to Lambda by the Lambda Web Adapter extension.

GET /               200 "ok" (the adapter's readiness check)
GET /hello?ms=N     sleeps N ms, then JSON: path, query, pid, thread, and the request id from the
                    adapter's `x-amzn-lambda-context` header
anything else       404
"""

import http.server
import json
import os
import threading
import time
import urllib.parse

PORT = int(os.environ.get("AWS_LWA_PORT") or os.environ.get("PORT") or "8080")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/":
            return self.answer(200, b"ok", "text/plain")
        if url.path == "/hello":
            query = dict(urllib.parse.parse_qsl(url.query))
            time.sleep(int(query.get("ms", "0")) / 1000.0)
            try:
                ctx = json.loads(self.headers.get("x-amzn-lambda-context") or "{}")
            except ValueError:
                ctx = {}
            return self.answer(200, {"path": url.path, "query": query, "pid": os.getpid(),
                                     "thread": threading.get_ident(), "requestId": ctx.get("request_id") or ctx.get("requestId")})
        return self.answer(404, {"message": "not found"})

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    print(f"web app listening on 127.0.0.1:{PORT}", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
