// fleetfn Java runtime: the function log. Owns LambdaLogger's implementation (one line per call
// on the original stdout, JSON records or plain text per AWS_LAMBDA_LOG_FORMAT, whole lines
// written at once so concurrent invokes never interleave), the request id of the invoke a
// thread serves, and the log records of invoke and init errors.
package dev.fleetfn.runtime;

import com.amazonaws.services.lambda.runtime.LambdaLogger;
import com.amazonaws.services.lambda.runtime.logging.LogLevel;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

public final class Logging {

    /** AWS_LAMBDA_LOG_FORMAT=JSON (otherwise Text). */
    static final boolean JSON = "JSON".equalsIgnoreCase(trimmed(System.getenv("AWS_LAMBDA_LOG_FORMAT")));

    /** AWS_LAMBDA_LOG_LEVEL (JSON format only): lines logged below it with a level are dropped. */
    private static final int MIN_LEVEL = levelRank(LogLevel.fromString(System.getenv("AWS_LAMBDA_LOG_LEVEL")));

    /** The stdout of the process, taken before user code could replace System.out. */
    private static final PrintStream OUT = System.out;

    private static final Object LOCK = new Object();

    private static final ThreadLocal<String> CURRENT_REQUEST = new ThreadLocal<>();

    private static final LambdaLogger THREAD_LOGGER = new Logger(null);

    private Logging() {
    }

    /** Loads this class (capturing stdout) before any user code runs. */
    static void init() {
        // The static initializer did the work.
    }

    /** Records the request id the current thread serves (null: none). */
    static void setCurrentRequest(String requestId) {
        if (requestId == null) {
            CURRENT_REQUEST.remove();
        } else {
            CURRENT_REQUEST.set(requestId);
        }
    }

    /** A logger whose lines carry the request id of whatever invoke the calling thread serves. */
    public static LambdaLogger threadLogger() {
        return THREAD_LOGGER;
    }

    /** A logger whose lines carry {@code requestId}. */
    static LambdaLogger forRequest(String requestId) {
        return new Logger(requestId);
    }

    private static final class Logger implements LambdaLogger {
        private final String requestId;

        Logger(String requestId) {
            this.requestId = requestId;
        }

        private String requestId() {
            return requestId != null ? requestId : CURRENT_REQUEST.get();
        }

        @Override
        public void log(String message) {
            emit(requestId(), null, message == null ? "null" : message);
        }

        @Override
        public void log(byte[] message) {
            if (message == null) {
                log((String) null);
            } else if (JSON) {
                emit(requestId(), null, new String(message, StandardCharsets.UTF_8));
            } else {
                writeText(message);
            }
        }

        @Override
        public void log(String message, LogLevel level) {
            emit(requestId(), level, message == null ? "null" : message);
        }

        @Override
        public void log(byte[] message, LogLevel level) {
            log(message == null ? null : new String(message, StandardCharsets.UTF_8), level);
        }

        @Override
        public String toString() {
            return "LambdaLogger";
        }
    }

    private static void emit(String requestId, LogLevel level, String message) {
        boolean leveled = level != null && level != LogLevel.UNDEFINED;
        if (JSON) {
            if (leveled && levelRank(level) < MIN_LEVEL) {
                return;
            }
            StringBuilder sb = new StringBuilder(message.length() + 128);
            sb.append("{\"timestamp\":\"");
            isoTimestamp(sb, System.currentTimeMillis());
            sb.append("\",\"level\":\"").append(leveled ? level.name() : "INFO").append("\",\"message\":");
            Json.quote(sb, message);
            if (requestId != null) {
                sb.append(",\"AWSRequestId\":");
                Json.quote(sb, requestId);
            }
            sb.append("}\n");
            writeLine(sb.toString());
        } else {
            String text = leveled ? "[" + level.name() + "] " + message : message;
            writeLine(text.endsWith("\n") ? text : text + "\n");
        }
    }

    private static void writeText(byte[] message) {
        int n = message.length;
        if (n > 0 && message[n - 1] == '\n') {
            writeBytes(message);
        } else {
            byte[] line = new byte[n + 1];
            System.arraycopy(message, 0, line, 0, n);
            line[n] = '\n';
            writeBytes(line);
        }
    }

    /** Logs an invoke's error: a JSON record in the JSON format, the error body in Text. */
    static void invokeError(String requestId, String errorType, String errorMessage, List<String> stackTrace) {
        errorRecord(requestId, errorType, errorMessage, stackTrace);
    }

    /** Logs an init error. */
    static void initError(String errorType, String errorMessage, List<String> stackTrace) {
        errorRecord(null, errorType, errorMessage, stackTrace);
    }

    private static void errorRecord(String requestId, String errorType, String errorMessage, List<String> stack) {
        StringBuilder sb = new StringBuilder(256);
        if (JSON) {
            sb.append("{\"timestamp\":\"");
            isoTimestamp(sb, System.currentTimeMillis());
            sb.append("\",\"level\":\"ERROR\",\"message\":");
            Json.quote(sb, errorType + ": " + errorMessage);
            if (requestId != null) {
                sb.append(",\"AWSRequestId\":");
                Json.quote(sb, requestId);
            }
            sb.append(",\"errorType\":");
            Json.quote(sb, errorType);
            sb.append(",\"errorMessage\":");
            Json.quote(sb, errorMessage);
            sb.append(",\"stackTrace\":");
            appendStrings(sb, stack);
            sb.append("}\n");
        } else {
            sb.append(errorBody(errorType, errorMessage, stack)).append('\n');
        }
        writeLine(sb.toString());
    }

    /** The Runtime API error body: {"errorMessage":..,"errorType":..,"stackTrace":[..]}. */
    static String errorBody(String errorType, String errorMessage, List<String> stack) {
        StringBuilder sb = new StringBuilder(256);
        sb.append("{\"errorMessage\":");
        Json.quote(sb, errorMessage);
        sb.append(",\"errorType\":");
        Json.quote(sb, errorType);
        sb.append(",\"stackTrace\":");
        appendStrings(sb, stack);
        sb.append('}');
        return sb.toString();
    }

    private static void appendStrings(StringBuilder sb, List<String> items) {
        sb.append('[');
        for (int i = 0; i < items.size(); i++) {
            if (i > 0) {
                sb.append(',');
            }
            Json.quote(sb, items.get(i));
        }
        sb.append(']');
    }

    /** Writes a runtime diagnostic line to stderr (not part of the function's own output format). */
    static void diagnostic(String message) {
        byte[] line = ("fleetfn java runtime: " + message + "\n").getBytes(StandardCharsets.UTF_8);
        PrintStream err = ERR;
        synchronized (LOCK) {
            err.write(line, 0, line.length);
            err.flush();
        }
    }

    private static final PrintStream ERR = System.err;

    private static void writeLine(String line) {
        writeBytes(line.getBytes(StandardCharsets.UTF_8));
    }

    private static void writeBytes(byte[] line) {
        // One write call per line: PrintStream writes an array under its own lock, so lines of
        // concurrent invokes (and the function's own System.out lines) never interleave.
        synchronized (LOCK) {
            OUT.write(line, 0, line.length);
            OUT.flush();
        }
    }

    private static int levelRank(LogLevel level) {
        switch (level) {
            case TRACE:
                return 0;
            case DEBUG:
                return 1;
            case WARN:
                return 3;
            case ERROR:
                return 4;
            case FATAL:
                return 5;
            default:
                return 2; // INFO, UNDEFINED
        }
    }

    private static String trimmed(String s) {
        return s == null ? "" : s.trim();
    }

    /** Appends epoch milliseconds as ISO-8601 UTC with milliseconds, e.g. 2026-01-02T03:04:05.678Z. */
    static void isoTimestamp(StringBuilder sb, long epochMs) {
        long days = Math.floorDiv(epochMs, 86_400_000L);
        long msOfDay = Math.floorMod(epochMs, 86_400_000L);
        // Civil date from days since 1970-01-01 (proleptic Gregorian).
        long z = days + 719_468;
        long era = Math.floorDiv(z, 146_097);
        long doe = z - era * 146_097;
        long yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        long y = yoe + era * 400;
        long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        long mp = (5 * doy + 2) / 153;
        long d = doy - (153 * mp + 2) / 5 + 1;
        long m = mp < 10 ? mp + 3 : mp - 9;
        if (m <= 2) {
            y++;
        }
        pad(sb, y, 4).append('-');
        pad(sb, m, 2).append('-');
        pad(sb, d, 2).append('T');
        pad(sb, msOfDay / 3_600_000, 2).append(':');
        pad(sb, (msOfDay / 60_000) % 60, 2).append(':');
        pad(sb, (msOfDay / 1000) % 60, 2).append('.');
        pad(sb, msOfDay % 1000, 3).append('Z');
    }

    private static StringBuilder pad(StringBuilder sb, long value, int width) {
        String s = Long.toString(value);
        for (int i = s.length(); i < width; i++) {
            sb.append('0');
        }
        return sb.append(s);
    }
}
