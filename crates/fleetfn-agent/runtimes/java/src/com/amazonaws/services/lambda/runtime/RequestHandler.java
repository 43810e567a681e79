// fleetfn Java runtime: the typed handler interface (AWS's public name and signature).
package com.amazonaws.services.lambda.runtime;

/**
 * A handler that receives the event mapped to {@code I} and returns a result the runtime
 * serializes to JSON.
 */
public interface RequestHandler<I, O> {

    /** Handles one invoke. */
    O handleRequest(I input, Context context);
}
