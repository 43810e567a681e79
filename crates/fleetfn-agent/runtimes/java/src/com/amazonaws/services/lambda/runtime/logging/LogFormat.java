// fleetfn Java runtime: log formats (AWS's public names).
package com.amazonaws.services.lambda.runtime.logging;

/** The format of the function's log lines (AWS_LAMBDA_LOG_FORMAT). */
public enum LogFormat {
    JSON,
    TEXT;

    /** The format named {@code name} (any case); TEXT unless it is JSON. */
    public static LogFormat fromString(String name) {
        return name != null && name.trim().equalsIgnoreCase("JSON") ? JSON : TEXT;
    }
}
