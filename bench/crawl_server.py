"""A static file server for the crawl benchmark, one process per host address.

`python -m http.server` listens with a backlog of 5, so a burst of 16 connections
overflows it and the kernel drops SYNs, which are retried after a second: the
benchmark then measures TCP retransmission timers, not crawlers. This is the same
server (ThreadingHTTPServer + SimpleHTTPRequestHandler) with a real backlog,
HTTP/1.1 keep-alive like any production server (so connection reuse counts), and
TCP_NODELAY (else every kept-alive response stalls 40 ms on a delayed ACK).

usage: crawl_server.py HOST PORT DIR [--http10]

Several processes may serve one HOST:PORT (SO_REUSEPORT), as nginx's workers do, so
that one host is not held to one core by the GIL.
"""
import functools, http.server, sys


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
    allow_reuse_port = True


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, the body waits for
    # the ACK of the headers, which the client delays by 40 ms on a kept-alive
    # connection (nginx and others set TCP_NODELAY on keep-alive connections too).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass


def main():
    host, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if "--http10" in sys.argv[4:]:
        Handler.protocol_version = "HTTP/1.0"
    Server((host, port), functools.partial(Handler, directory=root)).serve_forever()


if __name__ == "__main__":
    main()
