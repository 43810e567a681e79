// fleetfn Java runtime: the stream handler interface (AWS's public name and signature).
package com.amazonaws.services.lambda.runtime;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/** A handler that reads the raw event and writes the raw response. */
public interface RequestStreamHandler {

    /** Handles one invoke: the event is read from {@code input}, the response written to {@code output}. */
    void handleRequest(InputStream input, OutputStream output, Context context) throws IOException;
}
