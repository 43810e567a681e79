// fleetfn Java runtime: log levels of LambdaLogger (AWS's public names).
package com.amazonaws.services.lambda.runtime.logging;

/** The level of a log line. */
public enum LogLevel {
    UNDEFINED,
    TRACE,
    DEBUG,
    INFO,
    WARN,
    ERROR,
    FATAL;

    /** The level named {@code name} (any case); UNDEFINED when the name is unknown. */
    public static LogLevel fromString(String name) {
        if (name == null) {
            return UNDEFINED;
        }
        String upper = name.trim().toUpperCase(java.util.Locale.ROOT);
        for (LogLevel level : values()) {
            if (level.name().equals(upper)) {
                return level;
            }
        }
        return UNDEFINED;
    }
}
