// fleetfn Java runtime: the client context of an invoke made by a mobile SDK (AWS's public name
// and signatures).
package com.amazonaws.services.lambda.runtime;

import java.util.Map;

/** The client context the caller passed with the invoke. */
public interface ClientContext {

    /** The client application, or null. */
    Client getClient();

    /** Custom values the client set. */
    Map<String, String> getCustom();

    /** Environment values the client set. */
    Map<String, String> getEnvironment();
}
