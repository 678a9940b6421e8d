"""A health endpoint for http-check's end-to-end tests: the same handler on
plain HTTP and on HTTPS (with the certificate given), each on a free
loopback port, printed as `http PORT` and `https PORT` once listening.
`/health` answers 200 or 503 as the file `state` next to this script says
(`up` or anything else), so a test can take the service down and back."""

import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    flaps = 0

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/ok":
            self.send(200, b'{"status": "ok"}')
        elif path == "/health":
            try:
                up = open(os.path.join(HERE, "state")).read().strip() == "up"
            except OSError:
                up = False
            self.send(200, b"ok") if up else self.send(503, b"down")
        elif path == "/flap":
            Handler.flaps += 1
            self.send(500 if Handler.flaps % 2 else 200, b"flap")
        elif path == "/stall":
            time.sleep(30)
            self.send(200, b"too late")
        elif path == "/fail":
            self.send(500, b"internal error")
        elif path == "/body":
            self.send(200, b"maintenance page")
        elif path == "/slow":
            time.sleep(1.2)
            self.send(200, b"ok")
        elif path == "/redirect":
            self.send(302, headers=[("location", "/ok")])
        elif path == "/away":
            self.send(302, headers=[("location", "http://127.0.0.1:1/ok?token=s3cret")])
        elif path == "/loop":
            self.send(302, headers=[("location", "/loop")])
        elif path == "/huge":
            self.send_response(200)
            self.send_header("content-length", str(1 << 34))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(1 << 18):
                    self.wfile.write(chunk)
            except OSError:
                pass
        elif path == "/endless":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"1\r\nx\r\n")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        else:
            self.send(404, b"not found")


def serve(server):
    server.serve_forever()


def main():
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    plain.daemon_threads = True
    threading.Thread(target=serve, args=(plain,), daemon=True).start()
    print("http", plain.server_address[1], flush=True)
    if len(sys.argv) > 2:
        tls = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        threading.Thread(target=serve, args=(tls,), daemon=True).start()
        print("https", tls.server_address[1], flush=True)
    # Ends with its parent (the test): stdin closes.
    sys.stdin.read()


main()
