// fleetfn Java runtime: the logger a handler gets from its Context (AWS's public name and
// signatures).
package com.amazonaws.services.lambda.runtime;

import com.amazonaws.services.lambda.runtime.logging.LogLevel;

/** Writes log lines to the function's log. */
public interface LambdaLogger {

    /** Logs a message. */
    void log(String message);

    /** Logs a message given as UTF-8 bytes. */
    void log(byte[] message);

    /** Logs a message at a level (the level shows in the JSON log format). */
    default void log(String message, LogLevel logLevel) {
        log(message);
    }

    /** Logs a message given as UTF-8 bytes at a level. */
    default void log(byte[] message, LogLevel logLevel) {
        log(message);
    }
}
