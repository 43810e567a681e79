// fleetfn Java runtime: a minimal HTTP/1.1 client for the Lambda Runtime API. Owns one
// persistent (keep-alive) connection over a plain Socket with TCP_NODELAY; requests always carry
// Content-Length, responses are read by Content-Length, chunked transfer coding or until close.
// One instance per thread (not thread-safe).
package dev.fleetfn.runtime;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

final class RuntimeApiClient {

    static final String BASE = "/2018-06-01/runtime";

    private static final int MAX_LINE = 64 * 1024;

    private final String host;
    private final int port;
    private final String hostHeader;

    private Socket socket;
    private InputStream in;
    private OutputStream out;
    private final byte[] buf = new byte[16 * 1024];
    private int pos;
    private int lim;

    /** A response: status, headers (names in lower case) and the whole body. */
    static final class Response {
        final int status;
        final Map<String, String> headers;
        final byte[] body;

        Response(int status, Map<String, String> headers, byte[] body) {
            this.status = status;
            this.headers = headers;
            this.body = body;
        }

        /** The value of a header (name in lower case), or null. */
        String header(String lowerName) {
            return headers.get(lowerName);
        }

        String bodyText() {
            return new String(body, StandardCharsets.UTF_8);
        }
    }

    /** A client of the Runtime API at {@code hostPort} ("host:port", "[v6]:port"). */
    RuntimeApiClient(String hostPort) {
        String h = hostPort.trim();
        int p = 80;
        if (h.startsWith("[")) {
            int close = h.indexOf(']');
            if (close < 0) {
                throw new IllegalArgumentException("bad AWS_LAMBDA_RUNTIME_API: " + hostPort);
            }
            if (close + 1 < h.length() && h.charAt(close + 1) == ':') {
                p = Integer.parseInt(h.substring(close + 2));
            }
            h = h.substring(1, close);
        } else {
            int colon = h.lastIndexOf(':');
            if (colon >= 0) {
                p = Integer.parseInt(h.substring(colon + 1));
                h = h.substring(0, colon);
            }
        }
        if (h.isEmpty() || p <= 0 || p > 65535) {
            throw new IllegalArgumentException("bad AWS_LAMBDA_RUNTIME_API: " + hostPort);
        }
        this.host = h;
        this.port = p;
        this.hostHeader = hostPort.trim();
    }

    /** GET {@code path}. */
    Response get(String path) throws IOException {
        return request("GET", path, null, null, null);
    }

    /** POST {@code body} to {@code path} with an optional extra header. */
    Response post(String path, byte[] body, String contentType, String extraHeader) throws IOException {
        return request("POST", path, body, contentType, extraHeader);
    }

    private Response request(String method, String path, byte[] body, String contentType, String extraHeader)
            throws IOException {
        boolean reused = socket != null;
        if (!reused) {
            connect();
        }
        byte[] head = head(method, path, body, contentType, extraHeader);
        try {
            send(head, body);
            return readResponse();
        } catch (StaleConnection e) {
            close();
            if (!reused) {
                throw new IOException(e.getMessage(), e.getCause());
            }
        } catch (IOException e) {
            close();
            throw e;
        } catch (RuntimeException | Error e) {
            close();
            throw e;
        }
        // The server had closed the kept-alive connection before it saw this request: once more
        // on a new one.
        connect();
        try {
            send(head, body);
            return readResponse();
        } catch (StaleConnection e) {
            close();
            throw new IOException(e.getMessage(), e.getCause());
        } catch (IOException | RuntimeException | Error e) {
            close();
            throw e;
        }
    }

    /** The connection ended before any byte of the response arrived. */
    private static final class StaleConnection extends IOException {
        private static final long serialVersionUID = 1L;

        StaleConnection(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private void connect() throws IOException {
        Socket s = new Socket();
        try {
            s.setTcpNoDelay(true);
            s.setKeepAlive(true);
            s.connect(new InetSocketAddress(host, port), 10_000);
            socket = s;
            in = s.getInputStream();
            out = s.getOutputStream();
            pos = 0;
            lim = 0;
        } catch (IOException | RuntimeException e) {
            try {
                s.close();
            } catch (IOException ignored) {
                // closing a socket that never connected
            }
            throw e;
        }
    }

    /** Closes the connection (the next request opens a new one). */
    void close() {
        Socket s = socket;
        socket = null;
        in = null;
        out = null;
        pos = 0;
        lim = 0;
        if (s != null) {
            try {
                s.close();
            } catch (IOException ignored) {
                // nothing to do
            }
        }
    }

    private byte[] head(String method, String path, byte[] body, String contentType, String extraHeader) {
        StringBuilder sb = new StringBuilder(160);
        sb.append(method).append(' ').append(path).append(" HTTP/1.1\r\nHost: ").append(hostHeader)
                .append("\r\nUser-Agent: fleetfn-java-runtime\r\n");
        if (body != null) {
            sb.append("Content-Length: ").append(body.length).append("\r\n");
            if (contentType != null) {
                sb.append("Content-Type: ").append(contentType).append("\r\n");
            }
        }
        if (extraHeader != null) {
            sb.append(extraHeader).append("\r\n");
        }
        sb.append("\r\n");
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    private void send(byte[] head, byte[] body) throws IOException {
        try {
            if (body == null || body.length == 0) {
                out.write(head);
            } else if (body.length <= 64 * 1024) {
                byte[] all = new byte[head.length + body.length];
                System.arraycopy(head, 0, all, 0, head.length);
                System.arraycopy(body, 0, all, head.length, body.length);
                out.write(all);
            } else {
                out.write(head);
                out.write(body);
            }
            out.flush();
        } catch (IOException e) {
            // A write on a connection the server closed: treat as stale so a reused connection
            // is retried once.
            throw new StaleConnection("cannot send to the Runtime API: " + e.getMessage(), e);
        }
    }

    private Response readResponse() throws IOException {
        for (;;) {
            String statusLine = readLine(true);
            int status = parseStatus(statusLine);
            HashMap<String, String> headers = new HashMap<>();
            for (;;) {
                String line = readLine(false);
                if (line.isEmpty()) {
                    break;
                }
                int colon = line.indexOf(':');
                if (colon <= 0) {
                    throw new IOException("malformed response header: " + line);
                }
                String name = line.substring(0, colon).trim().toLowerCase(Locale.ROOT);
                String value = line.substring(colon + 1).trim();
                String old = headers.get(name);
                headers.put(name, old == null ? value : old + ", " + value);
            }
            if (status >= 100 && status < 200) {
                continue; // interim response
            }
            byte[] body;
            boolean closeAfter = false;
            String te = headers.get("transfer-encoding");
            String cl = headers.get("content-length");
            if (status == 204 || status == 304) {
                body = new byte[0];
            } else if (te != null && te.toLowerCase(Locale.ROOT).contains("chunked")) {
                body = readChunked();
            } else if (cl != null) {
                long len;
                try {
                    len = Long.parseLong(cl.trim());
                } catch (NumberFormatException e) {
                    throw new IOException("bad Content-Length: " + cl);
                }
                if (len < 0 || len > Integer.MAX_VALUE - 8) {
                    throw new IOException("bad Content-Length: " + cl);
                }
                body = readExactly((int) len);
            } else {
                body = readToEnd();
                closeAfter = true;
            }
            String conn = headers.get("connection");
            if (closeAfter || (conn != null && conn.toLowerCase(Locale.ROOT).contains("close"))
                    || statusLine.startsWith("HTTP/1.0") && (conn == null
                            || !conn.toLowerCase(Locale.ROOT).contains("keep-alive"))) {
                close();
            }
            return new Response(status, headers, body);
        }
    }

    private static int parseStatus(String line) throws IOException {
        // HTTP/1.1 200 OK
        int sp = line.indexOf(' ');
        if (!line.startsWith("HTTP/") || sp < 0 || line.length() < sp + 4) {
            throw new IOException("malformed status line: " + line);
        }
        try {
            return Integer.parseInt(line.substring(sp + 1, sp + 4));
        } catch (NumberFormatException e) {
            throw new IOException("malformed status line: " + line);
        }
    }

    private boolean fill() throws IOException {
        if (pos < lim) {
            return true;
        }
        int n = in.read(buf, 0, buf.length);
        if (n <= 0) {
            return false;
        }
        pos = 0;
        lim = n;
        return true;
    }

    /** A CRLF- (or LF-) terminated line without its terminator. */
    private String readLine(boolean first) throws IOException {
        ByteArrayOutputStream line = null;
        int total = 0;
        for (;;) {
            boolean more;
            try {
                more = fill();
            } catch (IOException e) {
                if (first && total == 0) {
                    throw new StaleConnection("cannot read from the Runtime API: " + e.getMessage(), e);
                }
                throw e;
            }
            if (!more) {
                if (first && total == 0) {
                    throw new StaleConnection("the Runtime API closed the connection without answering", null);
                }
                throw new EOFException("the Runtime API closed the connection mid-response");
            }
            first = false;
            int start = pos;
            while (pos < lim && buf[pos] != '\n') {
                pos++;
            }
            boolean done = pos < lim;
            int end = pos;
            if (done) {
                pos++; // past '\n'
            }
            total += end - start;
            if (total > MAX_LINE) {
                throw new IOException("response header line too long");
            }
            if (done && line == null) {
                if (end > start && buf[end - 1] == '\r') {
                    end--;
                }
                return new String(buf, start, end - start, StandardCharsets.UTF_8);
            }
            if (line == null) {
                line = new ByteArrayOutputStream(256);
            }
            line.write(buf, start, end - start);
            if (done) {
                byte[] b = line.toByteArray();
                int n = b.length;
                if (n > 0 && b[n - 1] == '\r') {
                    n--;
                }
                return new String(b, 0, n, StandardCharsets.UTF_8);
            }
        }
    }

    private byte[] readExactly(int len) throws IOException {
        byte[] body = new byte[len];
        int have = Math.min(len, lim - pos);
        System.arraycopy(buf, pos, body, 0, have);
        pos += have;
        while (have < len) {
            int n = in.read(body, have, len - have);
            if (n <= 0) {
                throw new EOFException("the Runtime API closed the connection mid-body");
            }
            have += n;
        }
        return body;
    }

    private void readInto(ByteArrayOutputStream sink, long len) throws IOException {
        while (len > 0) {
            if (!fill()) {
                throw new EOFException("the Runtime API closed the connection mid-chunk");
            }
            int n = (int) Math.min(len, lim - pos);
            sink.write(buf, pos, n);
            pos += n;
            len -= n;
        }
    }

    private byte[] readChunked() throws IOException {
        ByteArrayOutputStream body = new ByteArrayOutputStream(1024);
        for (;;) {
            String sizeLine = readLine(false);
            int semi = sizeLine.indexOf(';');
            String hex = (semi >= 0 ? sizeLine.substring(0, semi) : sizeLine).trim();
            long size;
            try {
                size = Long.parseLong(hex, 16);
            } catch (NumberFormatException e) {
                throw new IOException("bad chunk size: " + sizeLine);
            }
            if (size < 0 || body.size() + size > Integer.MAX_VALUE - 8) {
                throw new IOException("bad chunk size: " + sizeLine);
            }
            if (size == 0) {
                // Trailers up to the empty line.
                while (!readLine(false).isEmpty()) {
                    // ignore trailers
                }
                return body.toByteArray();
            }
            readInto(body, size);
            if (!readLine(false).isEmpty()) {
                throw new IOException("missing CRLF after a chunk");
            }
        }
    }

    private byte[] readToEnd() throws IOException {
        ByteArrayOutputStream body = new ByteArrayOutputStream(1024);
        if (pos < lim) {
            body.write(buf, pos, lim - pos);
            pos = lim;
        }
        byte[] chunk = new byte[16 * 1024];
        for (;;) {
            int n = in.read(chunk);
            if (n < 0) {
                return body.toByteArray();
            }
            body.write(chunk, 0, n);
        }
    }

    /** {@code s} percent-encoded for a URL path segment. */
    static String pathSegment(String s) {
        StringBuilder sb = null;
        byte[] bytes = null;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (!(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
                    || c == '.' || c == '~')) {
                bytes = s.getBytes(StandardCharsets.UTF_8);
                sb = new StringBuilder(bytes.length * 3);
                break;
            }
        }
        if (sb == null) {
            return s;
        }
        for (byte b : bytes) {
            int c = b & 0xFF;
            if (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
                    || c == '.' || c == '~') {
                sb.append((char) c);
            } else {
                sb.append('%').append("0123456789ABCDEF".charAt(c >> 4)).append("0123456789ABCDEF".charAt(c & 15));
            }
        }
        return sb.toString();
    }
}
