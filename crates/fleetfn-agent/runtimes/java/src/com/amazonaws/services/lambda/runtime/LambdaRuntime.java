// fleetfn Java runtime: static access to the function's logger outside a handler call (AWS's
// public name and signature).
package com.amazonaws.services.lambda.runtime;

import dev.fleetfn.runtime.Logging;

/** Static entry points of the runtime. */
public final class LambdaRuntime {

    private LambdaRuntime() {
    }

    /**
     * The function's logger. Lines written on a thread serving an invoke carry its request id.
     */
    public static LambdaLogger getLogger() {
        return Logging.threadLogger();
    }
}
